//! Compares two result sets cell by cell and decides which changes are regressions. Loading the
//! sets is `load.rs`'s, the metrics and thresholds `metric.rs`'s, the Markdown `markdown.rs`'s;
//! this module holds the decision.
//!
//! Latency: the change of the median batch latency, current over baseline, in percent, with a
//! percentile-bootstrap 95% interval from the raw samples of both sides (resampled independently,
//! seeded). A cell regresses on latency only when the whole interval lies above the threshold.
//! Energy per item, peak memory, model size and quality are single figures per cell: their change
//! is a point, and it regresses when the point is past the threshold. Quality changes are in
//! percentage points (a drop is negative); the rest in percent.

mod load;
mod markdown;
mod metric;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::stats::{median_of, two_sample_change_ci, Interval};

pub use load::{load_criterion, load_set, CellFigures, ResultSet};
pub use markdown::markdown;
pub use metric::{Metric, Thresholds, ALL_METRICS};

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
                // The model's own peak where both runs recorded it; the worker's whole peak
                // (harness included) only against a run that predates it.
                Metric::Memory => base
                    .inference_peak_bytes
                    .zip(cur.inference_peak_bytes)
                    .or(base.peak_rss_bytes.zip(cur.peak_rss_bytes))
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
                    let ci = two_sample_change_ci(
                        &base.latency_samples_ms,
                        &cur.latency_samples_ms,
                        median_of,
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

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
