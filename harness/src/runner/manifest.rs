//! `run.json`: what a run folder was asked to do (the full plan, its share of it, and every
//! setting), so that `--resume` and `merge` work from the folder alone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::timing::TimingSettings;
use crate::carbon::CarbonSettings;
use crate::error::UsageError;
use crate::meter::choose::EnergyChoice;
use crate::plan::Plan;
use crate::results::SCHEMA_VERSION;
use slimbench_models::workload::{Cell, ModelInputs};

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
    /// The seed of the cells' order in every round ([`crate::rounds::round_order`]): the same
    /// seed gives the same orders, so a resume keeps them.
    #[serde(default)]
    pub order_seed: u64,
    /// Watts per vCPU given for the estimate (`--cpu-power`), instead of the table's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_power: Option<crate::meter::microarch::VcpuPower>,
    /// The host's embodied kg CO2e given for the SCI's M (`--embodied-kg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embodied_kg: Option<f64>,
    /// The host's life given for the SCI's M (`--lifetime-years`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_years: Option<f64>,
    /// Points of quality a recommended variant may lose (`--max-quality-drop`; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_quality_drop_points: Option<f64>,
    /// What a user's ONNX model is fed (`--inputs`, `--dims`, `--labels`).
    #[serde(default, skip_serializing_if = "ModelInputs::is_empty")]
    pub model_inputs: ModelInputs,
}

impl RunSpec {
    /// Where the meters look for this run on `host`: the energy choice, the powercap root and
    /// the estimate's coefficients from the run's settings, the CPU from the host. The parent
    /// probes with it before a run starts; each worker opens its own meter from it (a meter's
    /// handles cannot cross the process boundary).
    pub fn meter_settings(
        &self,
        host: &crate::host::HostInfo,
    ) -> crate::meter::choose::MeterSettings {
        crate::meter::choose::MeterSettings {
            choice: self.energy,
            powercap_root: self.powercap_root.clone(),
            cpu_model: host.cpu_model.clone(),
            logical_cores: host.logical_cores,
            gpus: None,
            cpu_power: self.cpu_power,
        }
    }

    /// The longest a cell may take before its worker is killed.
    pub fn cell_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.cell_timeout_s)
    }

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
            "CPU power per vCPU (W)",
            format!("{:?}", self.cpu_power),
            format!("{:?}", other.cpu_power),
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
pub const MANIFEST_FILE: &str = "run.json";

/// The manifest file of a run folder.
pub fn manifest_path(run_dir: &Path) -> PathBuf {
    run_dir.join(MANIFEST_FILE)
}

impl Manifest {
    /// Writes `run.json` into `run_dir`.
    pub fn write(&self, run_dir: &Path) -> anyhow::Result<()> {
        let path = manifest_path(run_dir);
        crate::atomic::write(&path, &serde_json::to_vec_pretty(self)?)
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
        let manifest: Manifest = serde_json::from_value(value)
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        manifest.check(&path)?;
        Ok(manifest)
    }

    /// Every stored setting passes the range its flag and config key pass ([`crate::limits`]),
    /// every cell's sizes too, and the share is one of the plan's: a hand-edited or damaged
    /// `run.json` is a usage error naming the file and the key before anything is prepared.
    pub fn check(&self, path: &Path) -> Result<(), UsageError> {
        use crate::limits;
        let t = &self.spec.timing;
        limits::MIN_DURATION_S.check_stored(
            t.min_duration_s,
            path,
            "spec.timing.min_duration_s",
        )?;
        limits::SAMPLE_HZ.check_stored(t.sample_hz, path, "spec.timing.sample_hz")?;
        limits::WARMUP.check_stored(t.warmup_iters as f64, path, "spec.timing.warmup_iters")?;
        limits::MIN_ITERS.check_stored(t.min_iters as f64, path, "spec.timing.min_iters")?;
        limits::ROUNDS.check_stored(t.rounds as f64, path, "spec.timing.rounds")?;
        limits::DISTURBED_RETRIES.check_stored(
            t.disturbed_retries as f64,
            path,
            "spec.timing.disturbed_retries",
        )?;
        if !(t.idle_s.is_finite() && (0.0..=MAX_IDLE_S).contains(&t.idle_s)) {
            return Err(UsageError(format!(
                "{}: key `spec.timing.idle_s` = {}: give a finite number from 0 to {MAX_IDLE_S} s; correct the file, or start a new run",
                path.display(),
                t.idle_s
            )));
        }
        limits::CELL_TIMEOUT_S.check_stored(
            self.spec.cell_timeout_s,
            path,
            "spec.cell_timeout_s",
        )?;
        limits::PUE.check_stored(self.spec.carbon.pue, path, "spec.carbon.pue")?;
        limits::CARBON_INTENSITY.check_stored(
            self.spec.carbon.intensity_g_per_kwh,
            path,
            "spec.carbon.intensity_g_per_kwh",
        )?;
        if let Some(threads) = self.spec.threads {
            limits::THREADS.check_stored(threads as f64, path, "spec.threads")?;
        }
        if let Some(p) = self.spec.cpu_power {
            limits::CPU_POWER_W.check_stored(p.min_w, path, "spec.cpu_power.min_w")?;
            limits::CPU_POWER_W.check_stored(p.max_w, path, "spec.cpu_power.max_w")?;
            if p.min_w > p.max_w {
                return Err(UsageError(format!(
                    "{}: key `spec.cpu_power`: min_w {} is above max_w {}; correct the file, or start a new run",
                    path.display(),
                    p.min_w,
                    p.max_w
                )));
            }
        }
        if let Some(kg) = self.spec.embodied_kg {
            limits::EMBODIED_KG.check_stored(kg, path, "spec.embodied_kg")?;
        }
        if let Some(points) = self.spec.max_quality_drop_points {
            limits::MAX_QUALITY_DROP.check_stored(points, path, "spec.max_quality_drop_points")?;
        }
        if let Some(years) = self.spec.lifetime_years {
            limits::LIFETIME_YEARS.check_stored(years, path, "spec.lifetime_years")?;
        }
        for (i, cell) in self.plan.cells.iter().enumerate() {
            let key = |name: &str| format!("plan.cells[{i}].{name}");
            limits::BATCH_SIZE.check_stored(cell.batch_size as f64, path, &key("batch_size"))?;
            for (d, v) in cell.dims.iter() {
                limits::of_dimension(d).check_stored(v as f64, path, &key(d.key))?;
            }
            if self.plan.cells[..i].contains(cell) {
                return Err(UsageError(format!(
                    "{}: key `plan.cells[{i}]`: cell {cell} is in the plan twice; remove one, or start a new run",
                    path.display()
                )));
            }
        }
        if let Some(shard) = self.shard {
            if shard.index == 0 || shard.index > shard.count {
                return Err(UsageError(format!(
                    "{}: key `shard` = {}/{}: a share is i/N with 1 <= i <= N; correct the file, or start a new run",
                    path.display(),
                    shard.index,
                    shard.count
                )));
            }
        }
        Ok(())
    }
}

/// The longest idle-power window a stored run may ask for, s.
pub const MAX_IDLE_S: f64 = 60.0;
