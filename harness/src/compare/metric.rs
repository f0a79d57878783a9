//! The metrics the gate checks and how much worse each may get (`--threshold METRIC=VALUE`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::UsageError;

/// A metric the gate checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Median latency per batch (ms); change in %.
    Latency,
    /// Energy per item (J); change in %.
    Energy,
    /// Peak resident memory (bytes); change in %.
    Memory,
    /// Model size as stored (bytes); change in %.
    Size,
    /// Quality (accuracy %); change in points.
    Quality,
}

/// Every metric, in table order.
pub const ALL_METRICS: [Metric; 5] = [
    Metric::Latency,
    Metric::Energy,
    Metric::Memory,
    Metric::Size,
    Metric::Quality,
];

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "latency" => Ok(Metric::Latency),
            "energy" => Ok(Metric::Energy),
            "memory" => Ok(Metric::Memory),
            "size" => Ok(Metric::Size),
            "quality" => Ok(Metric::Quality),
            other => Err(format!(
                "unknown metric {other:?}; metrics: latency, energy, memory, size, quality"
            )),
        }
    }
}

impl Metric {
    /// The name used in flags and tables.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Latency => "latency",
            Metric::Energy => "energy",
            Metric::Memory => "memory",
            Metric::Size => "size",
            Metric::Quality => "quality",
        }
    }

    /// The unit of its change.
    pub fn change_unit(self) -> &'static str {
        if self == Metric::Quality {
            "points"
        } else {
            "%"
        }
    }
}

/// How much worse a metric may get before a cell regresses.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds(pub BTreeMap<Metric, f64>);

impl Default for Thresholds {
    /// latency +5%, energy +10%, peak memory +5%, size +0%, quality -0.5 points.
    fn default() -> Self {
        Self(BTreeMap::from([
            (Metric::Latency, 5.0),
            (Metric::Energy, 10.0),
            (Metric::Memory, 5.0),
            (Metric::Size, 0.0),
            (Metric::Quality, 0.5),
        ]))
    }
}

impl Thresholds {
    /// Applies `METRIC=VALUE` (percent, or points for quality; the allowed worsening, >= 0).
    pub fn set(&mut self, spec: &str) -> Result<(), UsageError> {
        let bad = |why: String| UsageError(format!("--threshold {spec:?}: {why}"));
        let (name, value) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected METRIC=VALUE, e.g. latency=3".into()))?;
        let metric: Metric = name.trim().parse().map_err(bad)?;
        let value: f64 = value
            .trim()
            .trim_end_matches('%')
            .parse()
            .map_err(|_| bad("VALUE is not a number".into()))?;
        if value.is_nan() || value < 0.0 {
            return Err(bad("VALUE must be 0 or more".into()));
        }
        self.0.insert(metric, value);
        Ok(())
    }

    /// The allowed worsening of `m` (0 where none is set).
    pub fn get(&self, m: Metric) -> f64 {
        self.0.get(&m).copied().unwrap_or(0.0)
    }
}
