//! What a run's records say, computed from the records alone: each variant against its baseline
//! ([`compare`]), what a saving is worth at a volume and what making a variant cost
//! ([`projection`]), and the variant to ship ([`recommend`]). Pure functions: nothing here reads
//! the clock or the hardware, and nothing here writes prose; `export/` renders it.

pub mod compare;
pub mod projection;
pub mod recommend;

#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::results::Record;
use crate::runner::manifest::Manifest;

/// A run as the exporters see it: its manifest, its records in plan order, and the power traces
/// by cell file name (`traces/<slug>.csv` text).
#[derive(Debug, Clone)]
pub struct RunData {
    /// `run.json`.
    pub manifest: Manifest,
    /// The records.
    pub records: Vec<Record>,
    /// Trace CSV text by cell slug.
    pub traces: std::collections::BTreeMap<String, String>,
}

impl RunData {
    /// Reads a run folder: `run.json`, `results.jsonl` (ordered by the plan) and `traces/*.csv`.
    pub fn load(dir: &std::path::Path) -> anyhow::Result<Self> {
        let manifest = Manifest::read(dir)?;
        let run_dir = crate::run_dir::RunDir::new(dir);
        let records = crate::results::order_by_plan(run_dir.records()?, &manifest.plan);
        let mut traces = std::collections::BTreeMap::new();
        for path in run_dir.trace_files().values() {
            if let (Some(stem), Ok(text)) = (
                path.file_stem().and_then(|s| s.to_str()),
                std::fs::read_to_string(path),
            ) {
                traces.insert(stem.to_string(), text);
            }
        }
        Ok(Self {
            manifest,
            records,
            traces,
        })
    }

    /// The run's quality budget (`--max-quality-drop`, 1 point by default).
    pub fn budget(&self) -> QualityBudget {
        self.manifest
            .spec
            .max_quality_drop_points
            .map_or_else(QualityBudget::default, |p| QualityBudget {
                max_drop_points: p,
            })
    }
}

/// How far quality may fall for a variant to count as equivalent: an absolute budget in points,
/// beside MLPerf's relative tiers (99% and 99.9% of the baseline's quality).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QualityBudget {
    /// Largest accepted drop, in percentage points of accuracy.
    pub max_drop_points: f64,
}

impl Default for QualityBudget {
    /// Within 1 point of the baseline's accuracy.
    fn default() -> Self {
        Self {
            max_drop_points: 1.0,
        }
    }
}

/// The volume a projection is made for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Volume {
    /// Inferences (items) a day.
    pub items_per_day: f64,
    /// Days.
    pub days: f64,
}

impl Default for Volume {
    /// One million inferences a day for a year.
    fn default() -> Self {
        Self {
            items_per_day: 1e6,
            days: 365.0,
        }
    }
}

/// The distinct (grid intensity g/kWh, its source, PUE) the records used, each with how many
/// cells used it: one entry for a run, several for shares merged with different settings.
pub fn carbon_settings_used(records: &[Record]) -> Vec<(f64, String, f64, usize)> {
    let mut out: Vec<(f64, String, f64, usize)> = Vec::new();
    for c in records.iter().filter_map(|r| r.carbon.as_ref()) {
        match out.iter_mut().find(|(i, s, p, _)| {
            *i == c.intensity_g_per_kwh && *s == c.intensity_source && *p == c.pue
        }) {
            Some(entry) => entry.3 += 1,
            None => out.push((c.intensity_g_per_kwh, c.intensity_source.clone(), c.pue, 1)),
        }
    }
    out
}

/// The energy sources of the records, each once, and whether all were measured.
pub fn energy_sources(records: &[Record]) -> (Vec<String>, bool) {
    let mut sources: Vec<String> = Vec::new();
    let mut measured = true;
    for e in records.iter().filter_map(|r| r.energy.as_ref()) {
        if !sources.contains(&e.source) {
            sources.push(e.source.clone());
        }
        measured &= e.measured;
    }
    (sources, measured && !records.is_empty())
}
