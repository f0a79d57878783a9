//! Compares two result sets cell by cell and decides which changes are regressions.
//!
//! Latency: the change of the median batch latency, current over baseline, in percent, with a
//! percentile-bootstrap 95% interval from the raw samples of both sides (resampled independently,
//! seeded). A cell regresses on latency only when the whole interval lies above the threshold.
//! Energy per item, peak memory, model size and quality are single figures per cell: their change
//! is a point, and it regresses when the point is past the threshold. Quality changes are in
//! percentage points (a drop is negative); the rest in percent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::UsageError;
use crate::results::{read_records, Status};
use crate::stats::{median_of, percentile_sorted, Interval};

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

    fn get(&self, m: Metric) -> f64 {
        self.0.get(&m).copied().unwrap_or(0.0)
    }
}

/// One cell's figures, from either kind of input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CellFigures {
    /// Raw latency samples per batch, ms.
    pub latency_samples_ms: Vec<f64>,
    /// Median latency per batch, ms (from the samples, or criterion's estimate).
    pub latency_median_ms: Option<f64>,
    /// Energy per item, J.
    pub energy_per_item_j: Option<f64>,
    /// Peak resident memory, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Model size, bytes.
    pub model_bytes: Option<usize>,
    /// Quality, %.
    pub quality_pct: Option<f64>,
    /// Why the cell has no figures: `failed: ...` or `not-applicable: ...`; `None` when measured.
    pub failure: Option<String>,
}

/// A loaded result set: cell name to figures.
pub type ResultSet = BTreeMap<String, CellFigures>;

/// Loads a slimbench run folder (`results.jsonl`) or a criterion baseline given as `DIR@NAME`
/// (every `DIR/**/NAME/estimates.json`).
pub fn load_set(arg: &str) -> Result<ResultSet, UsageError> {
    let path = Path::new(arg);
    if path.join("results.jsonl").exists() {
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
    let path = dir.join("results.jsonl");
    let records = read_records(&path)?;
    let mut set = ResultSet::new();
    for r in records {
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
        set.insert(
            r.key.to_string(),
            CellFigures {
                latency_samples_ms: r.latency_samples_ms,
                latency_median_ms: median.or(r.latency.as_ref().map(|l| l.p50_ms)),
                energy_per_item_j: r.energy.as_ref().map(|e| e.energy_per_item_j),
                peak_rss_bytes: r.peak_rss_bytes,
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

/// The change of one metric in one cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricChange {
    /// Which metric.
    pub metric: Metric,
    /// Baseline figure.
    pub baseline: f64,
    /// Current figure.
    pub current: f64,
    /// Change: percent, or points for quality.
    pub change: f64,
    /// 95% interval of the change, where raw samples allow one.
    pub ci95: Option<Interval>,
    /// The allowed worsening.
    pub threshold: f64,
    /// True when the change (its whole interval) is worse than the threshold.
    pub regressed: bool,
}

/// One cell's changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellComparison {
    /// Cell name.
    pub cell: String,
    /// Changes of the metrics both sides have.
    pub changes: Vec<MetricChange>,
}

/// A cell measured in the baseline that the current set lost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LostCell {
    /// Cell name.
    pub cell: String,
    /// What happened to it: `failed: ...`, `not-applicable: ...`, or missing.
    pub why: String,
}

/// The comparison of two sets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Cells measured in both.
    pub cells: Vec<CellComparison>,
    /// Cells measured in the baseline that failed, became not applicable, or (unless missing
    /// cells are allowed) are missing in the current set: each is a regression.
    pub lost: Vec<LostCell>,
    /// Cells only in the baseline.
    pub only_baseline: Vec<String>,
    /// Cells only in the current set.
    pub only_current: Vec<String>,
}

impl Comparison {
    /// True when some metric of some cell regressed, or a measured cell was lost.
    pub fn regressed(&self) -> bool {
        !self.lost.is_empty()
            || self
                .cells
                .iter()
                .any(|c| c.changes.iter().any(|m| m.regressed))
    }
}

/// Bootstrap 95% interval of the change of the median, current over baseline, in percent.
pub fn median_change_ci(
    baseline: &[f64],
    current: &[f64],
    resamples: usize,
    rng: &mut ChaCha8Rng,
) -> Option<Interval> {
    if baseline.len() < 2 || current.len() < 2 {
        return None;
    }
    let mut a = vec![0.0; baseline.len()];
    let mut b = vec![0.0; current.len()];
    let mut changes = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for x in a.iter_mut() {
            *x = baseline[rng.gen_range(0..baseline.len())];
        }
        for x in b.iter_mut() {
            *x = current[rng.gen_range(0..current.len())];
        }
        let base = median_of(&mut a);
        if base > 0.0 {
            changes.push(100.0 * (median_of(&mut b) / base - 1.0));
        }
    }
    changes.sort_by(f64::total_cmp);
    (!changes.is_empty()).then(|| Interval {
        lo: percentile_sorted(&changes, 2.5),
        hi: percentile_sorted(&changes, 97.5),
    })
}

fn pct(base: f64, cur: f64) -> f64 {
    if base == 0.0 {
        if cur == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        100.0 * (cur / base - 1.0)
    }
}

/// Compares `current` against `baseline` on `metrics` (seeded bootstrap).
pub fn compare(
    baseline: &ResultSet,
    current: &ResultSet,
    thresholds: &Thresholds,
    metrics: &[Metric],
    seed: u64,
    allow_missing: bool,
) -> Comparison {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cells = Vec::new();
    let mut lost = Vec::new();
    for (cell, base) in baseline {
        if base.failure.is_some() {
            continue;
        }
        let Some(cur) = current.get(cell) else {
            if !allow_missing {
                lost.push(LostCell {
                    cell: cell.clone(),
                    why: "missing from the current set (allow with --allow-missing)".into(),
                });
            }
            continue;
        };
        if let Some(why) = &cur.failure {
            lost.push(LostCell {
                cell: cell.clone(),
                why: why.clone(),
            });
            continue;
        }
        let mut changes = Vec::new();
        for &metric in metrics {
            let threshold = thresholds.get(metric);
            let pair = match metric {
                Metric::Latency => base.latency_median_ms.zip(cur.latency_median_ms),
                Metric::Energy => base.energy_per_item_j.zip(cur.energy_per_item_j),
                Metric::Memory => base
                    .peak_rss_bytes
                    .zip(cur.peak_rss_bytes)
                    .map(|(a, b)| (a as f64, b as f64)),
                Metric::Size => base
                    .model_bytes
                    .zip(cur.model_bytes)
                    .map(|(a, b)| (a as f64, b as f64)),
                Metric::Quality => base.quality_pct.zip(cur.quality_pct),
            };
            let Some((b, c)) = pair else {
                continue;
            };
            let (change, ci95, regressed) = match metric {
                Metric::Quality => {
                    let d = c - b;
                    (d, None, d < -threshold)
                }
                Metric::Latency => {
                    let ci = median_change_ci(
                        &base.latency_samples_ms,
                        &cur.latency_samples_ms,
                        1000,
                        &mut rng,
                    );
                    let change = pct(b, c);
                    let worst_case_low = ci.map_or(change, |i| i.lo);
                    (change, ci, worst_case_low > threshold)
                }
                _ => {
                    let change = pct(b, c);
                    (change, None, change > threshold)
                }
            };
            changes.push(MetricChange {
                metric,
                baseline: b,
                current: c,
                change,
                ci95,
                threshold,
                regressed,
            });
        }
        cells.push(CellComparison {
            cell: cell.clone(),
            changes,
        });
    }
    Comparison {
        cells,
        lost,
        only_baseline: baseline
            .keys()
            .filter(|k| !current.contains_key(*k))
            .cloned()
            .collect(),
        only_current: current
            .keys()
            .filter(|k| !baseline.contains_key(*k))
            .cloned()
            .collect(),
    }
}

fn figure(metric: Metric, v: f64) -> String {
    match metric {
        Metric::Latency => format!("{v:.4} ms"),
        Metric::Energy => format!("{v:.3e} J"),
        Metric::Memory | Metric::Size => format!("{:.1} KiB", v / 1024.0),
        Metric::Quality => format!("{v:.2}%"),
    }
}

/// The comparison as a Markdown table, fit for a CI job summary.
pub fn markdown(c: &Comparison) -> String {
    let mut out = String::from("## slimbench compare\n\n");
    let regressed = c
        .cells
        .iter()
        .filter(|cell| cell.changes.iter().any(|m| m.regressed))
        .count();
    out.push_str(&format!(
        "**{}**: {} cells compared, {regressed} regressed, {} lost (measured in the baseline, failed or missing now), {} only in baseline, {} only in current.\n\n",
        if c.regressed() { "REGRESSION" } else { "OK" },
        c.cells.len(),
        c.lost.len(),
        c.only_baseline.len(),
        c.only_current.len()
    ));
    out.push_str(
        "| cell | metric | baseline | current | change | 95% CI | threshold | verdict |\n",
    );
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for cell in &c.cells {
        for m in &cell.changes {
            let unit = m.metric.change_unit();
            let ci = m
                .ci95
                .map(|i| format!("[{:+.2}, {:+.2}] {unit}", i.lo, i.hi))
                .unwrap_or_else(|| "-".into());
            let threshold = if m.metric == Metric::Quality {
                format!("-{} {unit}", m.threshold)
            } else {
                format!("+{}{unit}", m.threshold)
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:+.2} {unit} | {ci} | {threshold} | {} |\n",
                cell.cell,
                m.metric.name(),
                figure(m.metric, m.baseline),
                figure(m.metric, m.current),
                m.change,
                if m.regressed { "**regressed**" } else { "ok" }
            ));
        }
    }
    if !c.lost.is_empty() {
        out.push_str("\nLost, each a **regression** (measured in the baseline):\n");
        for l in &c.lost {
            out.push_str(&format!("- {}: {}\n", l.cell, l.why));
        }
    }
    for (title, list) in [
        ("Only in the baseline (missing now)", &c.only_baseline),
        ("Only in the current set (new)", &c.only_current),
    ] {
        if !list.is_empty() {
            out.push_str(&format!("\n{title}:\n"));
            for cell in list {
                out.push_str(&format!("- {cell}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy(rng: &mut ChaCha8Rng, center: f64, noise: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| center * (1.0 + noise * (2.0 * rng.gen::<f64>() - 1.0) * 3f64.sqrt()))
            .collect()
    }

    fn set_with(samples: Vec<f64>) -> ResultSet {
        let mut s = samples.clone();
        ResultSet::from([(
            "m/t/cpu/b1".to_string(),
            CellFigures {
                latency_median_ms: Some(median_of(&mut s)),
                latency_samples_ms: samples,
                ..Default::default()
            },
        )])
    }

    /// A planted 20% latency regression under 5% noise is caught, and two sets from one
    /// distribution pass, each in at least 95 of 100 seeded trials.
    #[test]
    fn gate_catches_a_20_percent_regression_and_stays_quiet_on_noise() {
        let (mut caught, mut quiet) = (0, 0);
        let metrics = [Metric::Latency];
        for seed in 0..100u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let base = set_with(noisy(&mut rng, 10.0, 0.05, 100));
            let slower = set_with(noisy(&mut rng, 12.0, 0.05, 100));
            let same = set_with(noisy(&mut rng, 10.0, 0.05, 100));
            let t = Thresholds::default();
            if compare(&base, &slower, &t, &metrics, seed, false).regressed() {
                caught += 1;
            }
            if !compare(&base, &same, &t, &metrics, seed, false).regressed() {
                quiet += 1;
            }
        }
        assert!(caught >= 95, "caught {caught} of 100");
        assert!(quiet >= 95, "quiet {quiet} of 100");
    }

    #[test]
    fn a_one_point_quality_drop_fails_and_a_missing_cell_is_listed() {
        let cell = |q: f64| CellFigures {
            quality_pct: Some(q),
            ..Default::default()
        };
        let base = ResultSet::from([("a".to_string(), cell(98.0)), ("b".to_string(), cell(97.0))]);
        let cur = ResultSet::from([("a".to_string(), cell(97.0)), ("c".to_string(), cell(90.0))]);
        let c = compare(&base, &cur, &Thresholds::default(), &ALL_METRICS, 0, true);
        assert!(c.regressed());
        assert_eq!(c.only_baseline, ["b"]);
        assert_eq!(c.only_current, ["c"]);
        let md = markdown(&c);
        assert!(md.contains("**regressed**") && md.contains("- b"), "{md}");
        let small = ResultSet::from([("a".to_string(), cell(97.7))]);
        assert!(!compare(&base, &small, &Thresholds::default(), &ALL_METRICS, 0, true).regressed());
    }

    #[test]
    fn a_cell_ok_in_the_baseline_and_failed_or_missing_now_is_a_regression() {
        let ok = CellFigures {
            quality_pct: Some(98.0),
            ..Default::default()
        };
        let failed = CellFigures {
            failure: Some("failed: worker killed by signal 9".into()),
            ..Default::default()
        };
        let base = ResultSet::from([("a".to_string(), ok.clone()), ("b".to_string(), ok.clone())]);
        let cur = ResultSet::from([("a".to_string(), failed.clone())]);
        let c = compare(&base, &cur, &Thresholds::default(), &ALL_METRICS, 0, false);
        assert!(c.regressed());
        let lost: Vec<&str> = c.lost.iter().map(|l| l.cell.as_str()).collect();
        assert_eq!(lost, ["a", "b"]);
        let md = markdown(&c);
        assert!(
            md.starts_with("## slimbench compare\n\n**REGRESSION**"),
            "{md}"
        );
        assert!(
            md.contains("- a: failed: worker killed by signal 9"),
            "{md}"
        );
        // --allow-missing forgives the missing cell, never the failed one.
        let c = compare(&base, &cur, &Thresholds::default(), &ALL_METRICS, 0, true);
        assert_eq!(c.lost.len(), 1);
        assert!(c.regressed());
        // A cell that failed in the baseline too is no regression.
        let base = ResultSet::from([("a".to_string(), failed.clone())]);
        assert!(!compare(&base, &cur, &Thresholds::default(), &ALL_METRICS, 0, false).regressed());
    }

    #[test]
    fn thresholds_parse_and_refuse_nonsense() {
        let mut t = Thresholds::default();
        t.set("latency=3").unwrap();
        assert_eq!(t.get(Metric::Latency), 3.0);
        assert!(t.set("speed=3").unwrap_err().0.contains("unknown metric"));
        assert!(t.set("size=-1").is_err());
        assert!(t.set("size").is_err());
    }

    #[test]
    fn any_size_growth_regresses() {
        let cell = |b: usize| CellFigures {
            model_bytes: Some(b),
            ..Default::default()
        };
        let base = ResultSet::from([("a".to_string(), cell(1000))]);
        let cur = ResultSet::from([("a".to_string(), cell(1001))]);
        assert!(compare(
            &base,
            &cur,
            &Thresholds::default(),
            &[Metric::Size],
            0,
            false
        )
        .regressed());
    }
}
