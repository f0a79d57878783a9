//! The two kinds of result set the gate reads: a slimbench run folder (through [`RunDir`]) or a
//! criterion baseline (`DIR@NAME`), each as one figure set a cell.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::UsageError;
use crate::results::{Record, Status};
use crate::run_dir::RunDir;
use crate::stats::{median_of, paired_ratio, PairedRatio};

/// One cell's figures, from either kind of input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CellFigures {
    /// Raw latency samples per batch, ms.
    pub latency_samples_ms: Vec<f64>,
    /// Median latency per batch, ms (from the samples, or criterion's estimate).
    pub latency_median_ms: Option<f64>,
    /// Energy per item, J.
    pub energy_per_item_j: Option<f64>,
    /// Peak resident memory of the worker, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// The model's peak during inference (without the harness), bytes, where recorded.
    pub inference_peak_bytes: Option<u64>,
    /// Model size, bytes.
    pub model_bytes: Option<usize>,
    /// Quality, %.
    pub quality_pct: Option<f64>,
    /// Why the cell has no figures: `failed: ...` or `not-applicable: ...`; `None` when measured.
    pub failure: Option<String>,
    /// The latency samples by round (one group without rounds).
    pub latency_rounds: Vec<Vec<f64>>,
    /// Energy per item of each round, J.
    pub energy_rounds: Vec<f64>,
    /// The model's inference peak of each round, bytes.
    pub memory_rounds: Vec<f64>,
    /// Speed-up over the run's own baseline of the same setting, paired by round (mean latency).
    pub speedup: Option<PairedRatio>,
    /// Energy per item of the run's own baseline over this cell's, paired by round.
    pub energy_ratio: Option<PairedRatio>,
}

/// A loaded result set: cell name to figures.
pub type ResultSet = BTreeMap<String, CellFigures>;

/// Loads a slimbench run folder (`results.jsonl`) or a criterion baseline given as `DIR@NAME`
/// (every `DIR/**/NAME/estimates.json`).
pub fn load_set(arg: &str) -> Result<ResultSet, UsageError> {
    let path = Path::new(arg);
    if RunDir::new(path).has_results() {
        return load_slimbench(path);
    }
    if let Some((dir, name)) = arg.rsplit_once('@') {
        return load_criterion(Path::new(dir), name);
    }
    Err(UsageError(format!(
        "{arg}: no results.jsonl there; give a slimbench run folder, or a criterion baseline as DIR@NAME (e.g. target/criterion@main)"
    )))
}

fn load_slimbench(dir: &Path) -> Result<ResultSet, UsageError> {
    let records = RunDir::new(dir).records()?;
    let mut set = ResultSet::new();
    let baseline_of = |r: &Record| {
        records.iter().find(|b| {
            b.status == Status::Ok && b.key.technique.is_baseline() && b.key.same_setting(&r.key)
        })
    };
    for r in &records {
        if r.status != Status::Ok {
            let why = r.error.as_deref().unwrap_or("no reason recorded");
            let first_line = why.lines().next().unwrap_or(why);
            let status = match r.status {
                Status::Failed => "failed",
                _ => "not-applicable",
            };
            set.insert(
                r.key.to_string(),
                CellFigures {
                    failure: Some(format!("{status}: {first_line}")),
                    ..Default::default()
                },
            );
            continue;
        }
        let mut samples = r.latency_samples_ms.clone();
        let median = (!samples.is_empty()).then(|| median_of(&mut samples));
        let own_baseline = baseline_of(r).filter(|_| !r.key.technique.is_baseline());
        let speedup =
            own_baseline.and_then(|b| paired_ratio(&b.paired_rounds(r, |x| Some(x.mean_ms))));
        let energy_ratio =
            own_baseline.and_then(|b| paired_ratio(&b.paired_rounds(r, |x| x.energy_per_item_j)));
        set.insert(
            r.key.to_string(),
            CellFigures {
                latency_rounds: r.round_samples().iter().map(|g| g.to_vec()).collect(),
                energy_rounds: r
                    .rounds
                    .iter()
                    .filter_map(|x| x.energy_per_item_j)
                    .collect(),
                memory_rounds: r
                    .rounds
                    .iter()
                    .filter_map(|x| x.inference_peak_bytes.map(|b| b as f64))
                    .collect(),
                speedup,
                energy_ratio,
                latency_samples_ms: r.latency_samples_ms.clone(),
                latency_median_ms: median.or(r.latency.as_ref().map(|l| l.p50_ms)),
                energy_per_item_j: r.energy.as_ref().map(|e| e.energy_per_item_j),
                peak_rss_bytes: r.peak_rss_bytes,
                inference_peak_bytes: r.inference_peak_bytes,
                model_bytes: r.model_bytes,
                quality_pct: r.quality.as_ref().map(|q| q.value_pct),
                failure: None,
            },
        );
    }
    Ok(set)
}

fn find_baselines(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == name) && p.join("estimates.json").exists() {
                out.push(p);
            } else {
                find_baselines(&p, name, out);
            }
        }
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, UsageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))
}

/// Loads criterion baseline `name` under `root`: median from `estimates.json` (ns), raw
/// per-iteration samples from `sample.json` where present.
pub fn load_criterion(root: &Path, name: &str) -> Result<ResultSet, UsageError> {
    if !root.is_dir() {
        return Err(UsageError(format!(
            "{}: no such folder (criterion writes target/criterion)",
            root.display()
        )));
    }
    let mut found = Vec::new();
    find_baselines(root, name, &mut found);
    if found.is_empty() {
        return Err(UsageError(format!(
            "{}: no benchmark has a baseline named {name:?} (looked for */{name}/estimates.json)",
            root.display()
        )));
    }
    let mut set = ResultSet::new();
    for dir in found {
        let estimates = read_json(&dir.join("estimates.json"))?;
        let median_ns = estimates["median"]["point_estimate"]
            .as_f64()
            .ok_or_else(|| {
                UsageError(format!(
                    "{}: no median.point_estimate",
                    dir.join("estimates.json").display()
                ))
            })?;
        let mut samples = Vec::new();
        let sample_path = dir.join("sample.json");
        if sample_path.exists() {
            let sample = read_json(&sample_path)?;
            let iters = sample["iters"].as_array();
            let times = sample["times"].as_array();
            if let (Some(iters), Some(times)) = (iters, times) {
                for (i, t) in iters.iter().zip(times) {
                    if let (Some(i), Some(t)) = (i.as_f64(), t.as_f64()) {
                        if i > 0.0 {
                            samples.push(t / i / 1e6);
                        }
                    }
                }
            }
        }
        let key = dir
            .parent()
            .and_then(|p| p.strip_prefix(root).ok())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| dir.display().to_string());
        set.insert(
            key,
            CellFigures {
                latency_samples_ms: samples,
                latency_median_ms: Some(median_ns / 1e6),
                ..Default::default()
            },
        );
    }
    Ok(set)
}
