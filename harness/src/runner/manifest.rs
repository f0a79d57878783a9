//! `run.json`: what a run folder was asked to do (the full plan, its share of it, and every
//! setting), so that `--resume` and `merge` work from the folder alone.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::worker::TimingSettings;
use crate::carbon::CarbonSettings;
use crate::error::UsageError;
use crate::meter::choose::EnergyChoice;
use crate::plan::Plan;
use crate::results::SCHEMA_VERSION;
use slimbench_models::workload::Cell;

/// One share of a plan: every `count`-th cell starting at cell `index - 1` (1-based `index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 1-based share number.
    pub index: usize,
    /// Number of shares.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("--shard {s:?}: expected i/N with 1 <= i <= N, e.g. 2/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// True when cell number `position` (0-based, in plan order) belongs to this share.
    pub fn owns(&self, position: usize) -> bool {
        position % self.count == self.index - 1
    }
}

/// The cells of `plan` that `shard` owns (all of them without a shard).
pub fn shard_cells(plan: &Plan, shard: Option<Shard>) -> Vec<Cell> {
    plan.cells
        .iter()
        .enumerate()
        .filter(|(i, _)| shard.is_none_or(|s| s.owns(*i)))
        .map(|(_, c)| c.clone())
        .collect()
}

/// Every setting of a run, resolved from config file, flags and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Timing of each cell.
    pub timing: TimingSettings,
    /// Energy source.
    pub energy: EnergyChoice,
    /// Powercap root for RAPL.
    pub powercap_root: PathBuf,
    /// Prepared-weights cache.
    pub cache_dir: PathBuf,
    /// Per-cell timeout, seconds.
    pub cell_timeout_s: f64,
    /// Grid intensity and PUE for the CO2e figures.
    pub carbon: CarbonSettings,
    /// Threads each cell's model uses (`RAYON_NUM_THREADS` of the workers); runs written before
    /// the setting existed left it to the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

impl RunSpec {
    /// The measurement settings in which `self` and `other` differ (timing, energy source,
    /// threads, timeout, grid intensity and PUE), each as `name: a vs b`. Cache and powercap
    /// paths are where things are, not how they were measured, and are not compared.
    pub fn measurement_differences(&self, other: &RunSpec) -> Vec<String> {
        let mut out = Vec::new();
        let mut differ = |name: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{name}: {a} vs {b}"));
            }
        };
        differ(
            "timing",
            format!("{:?}", self.timing),
            format!("{:?}", other.timing),
        );
        differ(
            "energy",
            format!("{:?}", self.energy),
            format!("{:?}", other.energy),
        );
        differ(
            "threads",
            format!("{:?}", self.threads),
            format!("{:?}", other.threads),
        );
        differ(
            "cell timeout (s)",
            self.cell_timeout_s.to_string(),
            other.cell_timeout_s.to_string(),
        );
        differ(
            "grid intensity (g/kWh)",
            format!(
                "{} ({})",
                self.carbon.intensity_g_per_kwh, self.carbon.source
            ),
            format!(
                "{} ({})",
                other.carbon.intensity_g_per_kwh, other.carbon.source
            ),
        );
        differ(
            "PUE",
            self.carbon.pue.to_string(),
            other.carbon.pue.to_string(),
        );
        out
    }
}

/// The content of `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Record schema of the run.
    pub schema_version: u32,
    /// The run's id.
    pub run_id: String,
    /// The whole plan (all shares).
    pub plan: Plan,
    /// This folder's share, if the plan was split.
    pub shard: Option<Shard>,
    /// Settings.
    pub spec: RunSpec,
    /// The slimbench version that made the run.
    #[serde(default)]
    pub slimbench_version: String,
    /// The git commit it was built from.
    #[serde(default)]
    pub commit: String,
    /// When the run started, RFC 3339 UTC.
    #[serde(default)]
    pub started_utc: String,
}

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// This build's git commit.
pub const COMMIT: &str = env!("SLIMBENCH_GIT_COMMIT");

/// The manifest file of a run folder.
pub fn manifest_path(run_dir: &Path) -> PathBuf {
    crate::run_dir::RunDir::new(run_dir).manifest_path()
}

impl Manifest {
    /// Writes `run.json` into `run_dir`.
    pub fn write(&self, run_dir: &Path) -> anyhow::Result<()> {
        let path = manifest_path(run_dir);
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Reads `run.json` from `run_dir`; a missing or foreign folder is a usage error.
    pub fn read(run_dir: &Path) -> Result<Self, UsageError> {
        let path = manifest_path(run_dir);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            UsageError(format!(
                "{} is not a slimbench run folder (cannot read {}: {e})",
                run_dir.display(),
                path.display()
            ))
        })?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| UsageError(format!("{}: not valid JSON: {e}", path.display())))?;
        let version = value.get("schema_version").and_then(|v| v.as_u64());
        if version != Some(u64::from(SCHEMA_VERSION)) {
            return Err(UsageError(format!(
                "{}: schema version {} but this slimbench reads {SCHEMA_VERSION}",
                path.display(),
                version.map_or("missing".to_string(), |v| v.to_string())
            )));
        }
        serde_json::from_value(value).map_err(|e| UsageError(format!("{}: {e}", path.display())))
    }
}
