//! Compares two result sets cell by cell and decides which changes are regressions. Loading the
//! sets is `load.rs`'s, the metrics and thresholds `metric.rs`'s, the Markdown `markdown.rs`'s;
//! this module holds the decision.
//!
//! Two modes. **Relative** (the default): where a cell's own run holds its baseline (fp32 of the
//! same model, device and batch size) on both sides, latency and energy are gated on the cell's
//! ratio to that baseline, paired by round ([`crate::stats::paired_ratio`]), so a faster or
//! slower machine, or a slower afternoon, compares with main's; the change is the ratio's change
//! in percent (positive: the variant lost ground against its baseline), its 95% interval combines
//! the two ratios' intervals on the log scale. The baselines themselves are the reference and are
//! not gated on speed in this mode. **Absolute** (`--absolute`, and for cells without a baseline):
//! the change of the median batch latency, current over baseline, with a two-level bootstrap
//! interval (rounds, then iterations within each round, both sides independently, seeded); energy
//! per item and the model's peak memory with a bootstrap over rounds where both sides have two or
//! more. A cell regresses only when the whole interval lies past the threshold; a figure without
//! an interval (size, quality, a record without rounds) regresses when its point does. Quality
//! changes are in percentage points (a drop is negative); the rest in percent.

mod load;
mod markdown;
mod metric;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::stats::{mean_of, median_of, two_level_change_ci, Interval, PairedRatio};

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
    /// True when the figures are ratios to the run's own baseline (relative mode).
    pub relative: bool,
    /// What a confirmation run (`compare --confirm`) showed for this metric, where the current
    /// set flagged it: the change counts as a regression only when the confirmation flags it too.
    pub confirmation: Option<Confirmation>,
}

/// A flagged change measured again: the same metric of the same cell in a second current run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Confirmation {
    /// The second run's figure (a ratio in relative mode).
    pub current: f64,
    /// Its change against the baseline.
    pub change: f64,
    /// Its 95% interval.
    pub ci95: Option<Interval>,
    /// True when the second run is past the threshold too (the regression is confirmed).
    pub regressed: bool,
}

/// The resolution of a resident-memory figure between two identical workers (thread stacks,
/// allocator arenas and page-level accounting moved a 4 MiB figure by up to 0.5 MiB on the team's
/// VM): a change smaller than this is a tie whatever its percentage.
pub const MEMORY_RESOLUTION_BYTES: f64 = 1024.0 * 1024.0;

/// What latency and energy are gated on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Mode {
    /// Each cell's ratio to its own run's baseline, where both runs have it.
    Relative,
    /// The figures themselves.
    Absolute,
}

/// The change in percent of a paired ratio from `base` to `cur` (positive: the variant's ratio
/// to its baseline fell, it lost ground), with the 95% interval combining both intervals' log
/// half-widths in quadrature.
fn ratio_change(base: &PairedRatio, cur: &PairedRatio) -> (f64, Interval) {
    let d = (base.ratio / cur.ratio).ln();
    let half = |p: &PairedRatio| (p.ci95.hi.ln() - p.ci95.lo.ln()) / 2.0;
    let h = (half(base).powi(2) + half(cur).powi(2)).sqrt();
    let pct = |x: f64| 100.0 * (x.exp() - 1.0);
    (
        pct(d),
        Interval {
            lo: pct(d - h),
            hi: pct(d + h),
        },
    )
}

/// Bootstrap over rounds of the change of the mean of per-round figures, percent; `None` unless
/// both sides have two rounds or more.
fn rounds_change_ci(base: &[f64], cur: &[f64], rng: &mut ChaCha8Rng) -> Option<Interval> {
    if base.len() < 2 || cur.len() < 2 {
        return None;
    }
    let b: Vec<Vec<f64>> = base.iter().map(|v| vec![*v]).collect();
    let c: Vec<Vec<f64>> = cur.iter().map(|v| vec![*v]).collect();
    let b: Vec<&[f64]> = b.iter().map(Vec::as_slice).collect();
    let c: Vec<&[f64]> = c.iter().map(Vec::as_slice).collect();
    two_level_change_ci(&b, &c, mean_of, 1000, rng)
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

/// True when the cell name is a baseline's (`model/fp32/...`).
fn cell_is_reference(cell: &str) -> bool {
    cell.split('/').nth(1).is_some_and(|t| {
        t.parse::<slimbench_models::technique::Technique>()
            .is_ok_and(|t| t.is_baseline())
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

/// What [`compare`] is asked: the metrics, their thresholds, the mode, the bootstrap's seed, and
/// whether cells missing from the current set are allowed.
#[derive(Debug, Clone)]
pub struct Gate<'a> {
    /// The allowed worsening of each metric.
    pub thresholds: &'a Thresholds,
    /// The metrics gated.
    pub metrics: &'a [Metric],
    /// Seed of the bootstrap.
    pub seed: u64,
    /// Accept cells of the baseline missing from the current set.
    pub allow_missing: bool,
    /// Relative or absolute speed and energy.
    pub mode: Mode,
}

/// Compares `current` against `baseline`. With a `confirmation` set (a second run of the same
/// plan, measured after `current`), a change of a measured figure (latency, energy, memory)
/// that `current` flags is a regression only when the confirmation flags it too: a true
/// regression shows in both runs, a disturbed run in one (on a shared VM with 50 cells gated,
/// one run in a few flags some cell by chance). Quality, size and lost cells need no second run.
pub fn compare(
    baseline: &ResultSet,
    current: &ResultSet,
    confirmation: Option<&ResultSet>,
    gate: &Gate<'_>,
) -> Comparison {
    let mut first = compare_once(baseline, current, gate);
    let Some(second_set) = confirmation else {
        return first;
    };
    let second = compare_once(baseline, second_set, gate);
    for cell in &mut first.cells {
        for change in cell
            .changes
            .iter_mut()
            .filter(|c| c.regressed && c.ci95.is_some())
        {
            let again = second
                .cells
                .iter()
                .find(|c| c.cell == cell.cell)
                .and_then(|c| c.changes.iter().find(|m| m.metric == change.metric));
            // A cell the confirmation lacks (or measured another way) confirms nothing: the
            // first run's verdict stands.
            let Some(again) = again.filter(|a| a.relative == change.relative) else {
                continue;
            };
            change.regressed = again.regressed;
            change.confirmation = Some(Confirmation {
                current: again.current,
                change: again.change,
                ci95: again.ci95,
                regressed: again.regressed,
            });
        }
    }
    first
}

/// One comparison of `current` against `baseline` (seeded bootstrap).
fn compare_once(baseline: &ResultSet, current: &ResultSet, gate: &Gate<'_>) -> Comparison {
    let Gate {
        thresholds,
        metrics,
        seed,
        allow_missing,
        mode,
    } = *gate;
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
            // Relative mode: latency and energy as ratios to each run's own baseline.
            let paired = match (mode, metric) {
                (Mode::Relative, Metric::Latency) => base.speedup.zip(cur.speedup),
                (Mode::Relative, Metric::Energy) => base.energy_ratio.zip(cur.energy_ratio),
                _ => None,
            };
            if let Some((pb, pc)) = paired {
                let (change, ci) = ratio_change(&pb, &pc);
                changes.push(MetricChange {
                    metric,
                    baseline: pb.ratio,
                    current: pc.ratio,
                    change,
                    ci95: Some(ci),
                    threshold,
                    regressed: ci.lo > threshold,
                    relative: true,
                    confirmation: None,
                });
                continue;
            }
            if mode == Mode::Relative
                && matches!(metric, Metric::Latency | Metric::Energy)
                && base.speedup.is_none()
                && cell_is_reference(cell)
            {
                // The reference of every ratio: not gated on speed or energy in relative mode.
                continue;
            }
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
                    let groups = |f: &CellFigures| -> Vec<Vec<f64>> {
                        if f.latency_rounds.is_empty() {
                            vec![f.latency_samples_ms.clone()]
                        } else {
                            f.latency_rounds.clone()
                        }
                    };
                    let (gb, gc) = (groups(base), groups(cur));
                    let rb: Vec<&[f64]> = gb.iter().map(Vec::as_slice).collect();
                    let rc: Vec<&[f64]> = gc.iter().map(Vec::as_slice).collect();
                    let ci = two_level_change_ci(&rb, &rc, median_of, 1000, &mut rng);
                    let change = pct(b, c);
                    let worst_case_low = ci.map_or(change, |i| i.lo);
                    (change, ci, worst_case_low > threshold)
                }
                Metric::Energy | Metric::Memory => {
                    let (rb, rc) = if metric == Metric::Energy {
                        (&base.energy_rounds, &cur.energy_rounds)
                    } else {
                        (&base.memory_rounds, &cur.memory_rounds)
                    };
                    let ci = rounds_change_ci(rb, rc, &mut rng);
                    let change = pct(b, c);
                    let resolved = metric != Metric::Memory || (c - b) > MEMORY_RESOLUTION_BYTES;
                    (
                        change,
                        ci,
                        resolved && ci.map_or(change, |i| i.lo) > threshold,
                    )
                }
                Metric::Size => {
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
                relative: false,
                confirmation: None,
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

    /// A speed-up of `r` over three rounds, known to 3%.
    fn ratio(r: f64) -> PairedRatio {
        PairedRatio {
            ratio: r,
            ci95: Interval {
                lo: r * 0.97,
                hi: r * 1.03,
            },
            rounds: 3,
        }
    }

    /// [`compare`] without a confirmation run.
    fn cmp(
        base: &ResultSet,
        cur: &ResultSet,
        thresholds: &Thresholds,
        metrics: &[Metric],
        seed: u64,
        allow_missing: bool,
        mode: Mode,
    ) -> Comparison {
        let gate = Gate {
            thresholds,
            metrics,
            seed,
            allow_missing,
            mode,
        };
        compare(base, cur, None, &gate)
    }

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
            if cmp(&base, &slower, &t, &metrics, seed, false, Mode::Relative).regressed() {
                caught += 1;
            }
            if !cmp(&base, &same, &t, &metrics, seed, false, Mode::Relative).regressed() {
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
        let c = cmp(
            &base,
            &cur,
            &Thresholds::default(),
            &ALL_METRICS,
            0,
            true,
            Mode::Relative,
        );
        assert!(c.regressed());
        assert_eq!(c.only_baseline, ["b"]);
        assert_eq!(c.only_current, ["c"]);
        let md = markdown(&c);
        assert!(md.contains("**regressed**") && md.contains("- b"), "{md}");
        let small = ResultSet::from([("a".to_string(), cell(97.7))]);
        assert!(!cmp(
            &base,
            &small,
            &Thresholds::default(),
            &ALL_METRICS,
            0,
            true,
            Mode::Relative
        )
        .regressed());
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
        let c = cmp(
            &base,
            &cur,
            &Thresholds::default(),
            &ALL_METRICS,
            0,
            false,
            Mode::Relative,
        );
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
        let c = cmp(
            &base,
            &cur,
            &Thresholds::default(),
            &ALL_METRICS,
            0,
            true,
            Mode::Relative,
        );
        assert_eq!(c.lost.len(), 1);
        assert!(c.regressed());
        // A cell that failed in the baseline too is no regression.
        let base = ResultSet::from([("a".to_string(), failed.clone())]);
        assert!(!cmp(
            &base,
            &cur,
            &Thresholds::default(),
            &ALL_METRICS,
            0,
            false,
            Mode::Relative
        )
        .regressed());
    }

    /// A machine twice as slow leaves every ratio to its own baseline where it was: relative
    /// mode stays quiet where absolute mode flags it; a variant that lost a quarter of its
    /// speed-up is flagged in both.
    #[test]
    fn the_relative_gate_follows_ratios_not_the_machine() {
        let cell = |ms: f64, speedup: f64| CellFigures {
            latency_median_ms: Some(ms),
            latency_rounds: vec![vec![ms; 50], vec![ms * 1.001; 50], vec![ms * 0.999; 50]],
            speedup: Some(ratio(speedup)),
            ..Default::default()
        };
        let key = "m/q8_0/cpu/b1".to_string();
        let base = ResultSet::from([(key.clone(), cell(1.0, 2.0))]);
        let slower_machine = ResultSet::from([(key.clone(), cell(2.0, 2.0))]);
        let worse_variant = ResultSet::from([(key.clone(), cell(1.33, 1.5))]);
        let t = Thresholds::default();
        let gate = |cur: &ResultSet, mode| {
            cmp(&base, cur, &t, &[Metric::Latency], 0, false, mode).regressed()
        };
        assert!(!gate(&slower_machine, Mode::Relative));
        assert!(gate(&slower_machine, Mode::Absolute));
        assert!(gate(&worse_variant, Mode::Relative));
        let c = cmp(
            &base,
            &worse_variant,
            &t,
            &[Metric::Latency],
            0,
            false,
            Mode::Relative,
        );
        let m = &c.cells[0].changes[0];
        assert!(m.relative && (m.change - 33.33).abs() < 0.1, "{m:?}");
    }

    #[test]
    fn memory_changes_under_the_resolution_are_ties() {
        let cell = |mib: f64| CellFigures {
            inference_peak_bytes: Some((mib * 1048576.0) as u64),
            memory_rounds: vec![mib * 1048576.0; 3],
            ..Default::default()
        };
        let base = ResultSet::from([("a".to_string(), cell(4.0))]);
        let t = Thresholds::default();
        let gate = |cur: &ResultSet| {
            cmp(&base, cur, &t, &[Metric::Memory], 0, false, Mode::Relative).regressed()
        };
        assert!(!gate(&ResultSet::from([("a".to_string(), cell(4.5))])));
        assert!(gate(&ResultSet::from([("a".to_string(), cell(6.0))])));
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
        assert!(cmp(
            &base,
            &cur,
            &Thresholds::default(),
            &[Metric::Size],
            0,
            false,
            Mode::Relative
        )
        .regressed());
    }

    /// A speed-up flagged in one run and not in the confirmation run is no regression (the
    /// table says why); flagged in both, it is; quality needs no second run.
    #[test]
    fn a_flag_counts_only_when_the_confirmation_run_shows_it_too() {
        let cell = |speedup: f64, quality: f64| CellFigures {
            latency_median_ms: Some(1.0),
            speedup: Some(ratio(speedup)),
            quality_pct: Some(quality),
            ..Default::default()
        };
        let key = "m/q8_0/cpu/b1".to_string();
        let set = |speedup, quality| ResultSet::from([(key.clone(), cell(speedup, quality))]);
        let base = set(2.0, 98.0);
        let t = Thresholds::default();
        let metrics = [Metric::Latency, Metric::Quality];
        let gate = Gate {
            thresholds: &t,
            metrics: &metrics,
            seed: 0,
            allow_missing: false,
            mode: Mode::Relative,
        };
        let disturbed = set(1.5, 98.0);
        let fine = set(2.0, 98.0);
        let c = compare(&base, &disturbed, Some(&fine), &gate);
        assert!(!c.regressed(), "{c:?}");
        let latency = &c.cells[0].changes[0];
        assert!(latency.confirmation.is_some_and(|k| !k.regressed));
        assert!(markdown(&c).contains("not reproduced"), "{}", markdown(&c));
        assert!(compare(&base, &disturbed, Some(&disturbed), &gate).regressed());
        // Without a confirmation run the first run's flag stands.
        assert!(compare(&base, &disturbed, None, &gate).regressed());
        // A quality drop is not measured again: it fails whatever the second run says.
        assert!(compare(&base, &set(2.0, 96.0), Some(&fine), &gate).regressed());
    }
}
