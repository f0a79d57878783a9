//! Each variant against its baseline: quality, speed and energy changes with their 95%
//! intervals, and the A/A check of a control arm against its twin.

use serde::Serialize;

use crate::results::{Record, Status};
use slimbench_models::workload::Cell;

use super::QualityBudget;
use crate::stats::{mcnemar_exact_p, paired_difference_half_width, paired_ratio, t_interval};

/// The smallest relative uncertainty given to an energy figure: the meter's own error and the
/// drift of a shared machine between two cells, beyond what the timing interval shows.
pub const ENERGY_REL_FLOOR: f64 = 0.03;

/// A quality change with its 95% interval: paired where both models answered the same items
/// (McNemar's exact test and the paired difference's interval), else two independent binomials.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QualityChange {
    /// The baseline's quality, %.
    pub baseline_pct: f64,
    /// The variant's quality, %.
    pub variant_pct: f64,
    /// variant - baseline, points.
    pub delta_points: f64,
    /// Half-width of the 95% interval of the change, points.
    pub half_width_points: f64,
    /// Items evaluated.
    pub items: usize,
    /// McNemar's exact p-value, where the items were paired.
    pub mcnemar_p: Option<f64>,
}

/// The p-value at or above which a paired quality change is a tie.
pub const QUALITY_TIE_P: f64 = 0.05;

impl QualityChange {
    /// True when the change lies inside its uncertainty: a tie, not a loss or a gain (McNemar's
    /// p at least [`QUALITY_TIE_P`] where paired, else the change inside its interval).
    pub fn is_tie(&self) -> bool {
        match self.mcnemar_p {
            Some(p) => p >= QUALITY_TIE_P,
            None => self.delta_points.abs() <= self.half_width_points,
        }
    }
}

/// Half-width in points of the 95% interval of the difference of two accuracies `a` and `b` (%)
/// measured on `n` items each (normal approximation to the binomial).
pub fn accuracy_difference_half_width(a_pct: f64, b_pct: f64, n: usize) -> f64 {
    if n == 0 {
        return f64::INFINITY;
    }
    let var = |p: f64| {
        let p = (p / 100.0).clamp(0.0, 1.0);
        p * (1.0 - p) / n as f64
    };
    // At 100% or 0% the variance vanishes; one item is the resolution that remains.
    let floor = 1.0 / n as f64;
    100.0 * (1.96 * (var(a_pct) + var(b_pct)).sqrt()).max(floor)
}

/// Mean latency per batch of both cells, the speed-up and its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SpeedChange {
    /// Baseline mean latency per batch, ms.
    pub baseline_mean_ms: f64,
    /// Variant mean latency per batch, ms.
    pub variant_mean_ms: f64,
    /// baseline / variant (above 1: faster).
    pub speedup: f64,
    /// 95% interval of the speed-up, from both means' intervals.
    pub speedup_lo: f64,
    /// Upper end.
    pub speedup_hi: f64,
}

impl SpeedChange {
    /// True when the interval holds 1: no speed difference beyond the uncertainty.
    pub fn is_tie(&self) -> bool {
        self.speedup_lo <= 1.0 && 1.0 <= self.speedup_hi
    }
}

/// Energy per item of both cells, the saving and its uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EnergyChange {
    /// Baseline energy per item, J.
    pub baseline_j: f64,
    /// Variant energy per item, J.
    pub variant_j: f64,
    /// Saved, % of the baseline (negative: more energy).
    pub saved_pct: f64,
    /// Half-width of the saving's 95% interval, points of %.
    pub half_width_pct: f64,
    /// Relative 95% uncertainty of the variant's own figure (see [`energy_rel_uncertainty`]).
    pub variant_rel: f64,
}

impl EnergyChange {
    /// True when the saving lies inside its uncertainty.
    pub fn is_tie(&self) -> bool {
        self.saved_pct.abs() <= self.half_width_pct
    }
}

/// The relative 95% uncertainty of a record's energy per item: with two rounds or more, the
/// t-interval of its rounds' figures; for a record of one worker, energy is power over the same
/// timed window as the latency, so the relative half-width of the mean latency's interval, and at
/// least [`ENERGY_REL_FLOOR`].
pub fn energy_rel_uncertainty(r: &Record) -> f64 {
    // With rounds: the relative half-width of the t-interval of the rounds' energies per item.
    let rounds: Vec<f64> = r
        .rounds
        .iter()
        .filter_map(|x| x.energy_per_item_j)
        .collect();
    if let Some(i) = t_interval(&rounds) {
        let mean = rounds.iter().sum::<f64>() / rounds.len() as f64;
        if mean > 0.0 {
            return (i.hi - i.lo) / 2.0 / mean;
        }
    }
    let timing = r
        .latency
        .as_ref()
        .and_then(|l| {
            let ci = l.mean_ci95_ms?;
            (l.mean_ms > 0.0).then(|| (ci.hi - ci.lo) / 2.0 / l.mean_ms)
        })
        .unwrap_or(0.0);
    timing.max(ENERGY_REL_FLOOR)
}

/// A variant against the baseline of the same model, device and batch size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantRow {
    /// The cell.
    pub key: Cell,
    /// A control arm (`Technique::is_control`): shown, never recommended.
    pub control: bool,
    /// Quality against the baseline.
    pub quality: Option<QualityChange>,
    /// Speed against the baseline, from mean latencies (the statistic energy per item uses).
    pub speed: Option<SpeedChange>,
    /// Energy per item against the baseline.
    pub energy: Option<EnergyChange>,
    /// The baseline's and the variant's size, bytes.
    pub bytes: Option<(usize, usize)>,
    /// True when the quality drop is at most the absolute budget (point estimate).
    pub within_budget: bool,
    /// Quality at least 99% of the baseline's (MLPerf's 99% tier).
    pub meets_99: bool,
    /// Quality at least 99.9% of the baseline's (MLPerf's 99.9% tier).
    pub meets_99_9: bool,
}

impl VariantRow {
    /// Size as a fraction of the baseline's.
    pub fn size_ratio(&self) -> Option<f64> {
        self.bytes
            .and_then(|(b, v)| (b > 0).then(|| v as f64 / b as f64))
    }
}

fn baseline_of<'a>(records: &'a [Record], key: &Cell) -> Option<&'a Record> {
    records.iter().find(|r| {
        r.status == Status::Ok && r.key.technique.is_baseline() && r.key.same_setting(key)
    })
}

fn quality_change(base: &Record, r: &Record) -> Option<QualityChange> {
    let q = r.quality.as_ref()?;
    let b = base
        .quality
        .as_ref()
        .map_or(q.baseline_pct, |b| b.value_pct);
    let paired = q.paired.filter(|t| t.items() == q.items && t.items() > 0);
    Some(QualityChange {
        baseline_pct: b,
        variant_pct: q.value_pct,
        delta_points: q.value_pct - b,
        half_width_points: match paired {
            Some(t) => paired_difference_half_width(t.baseline_only, t.variant_only, t.items()),
            None => accuracy_difference_half_width(b, q.value_pct, q.items),
        },
        items: q.items,
        mcnemar_p: paired.map(|t| mcnemar_exact_p(t.baseline_only, t.variant_only)),
    })
}

pub(super) fn speed_change(base: &Record, r: &Record) -> Option<SpeedChange> {
    let (b, v) = (base.latency.as_ref()?, r.latency.as_ref()?);
    if b.mean_ms <= 0.0 || v.mean_ms <= 0.0 {
        return None;
    }
    // Paired by round where both cells have rounds: each round's ratio compares two cells
    // measured minutes apart, so the drift between rounds cancels.
    if let Some(p) = paired_ratio(&base.paired_rounds(r, |x| Some(x.mean_ms))) {
        return Some(SpeedChange {
            baseline_mean_ms: b.mean_ms,
            variant_mean_ms: v.mean_ms,
            speedup: p.ratio,
            speedup_lo: p.ci95.lo,
            speedup_hi: p.ci95.hi,
        });
    }
    let ci = |l: &crate::stats::LatencyStats| {
        l.mean_ci95_ms.map_or((l.mean_ms, l.mean_ms), |i| {
            (i.lo.max(f64::MIN_POSITIVE), i.hi)
        })
    };
    let ((b_lo, b_hi), (v_lo, v_hi)) = (ci(b), ci(v));
    Some(SpeedChange {
        baseline_mean_ms: b.mean_ms,
        variant_mean_ms: v.mean_ms,
        speedup: b.mean_ms / v.mean_ms,
        speedup_lo: b_lo / v_hi,
        speedup_hi: b_hi / v_lo,
    })
}

fn energy_change(base: &Record, r: &Record) -> Option<EnergyChange> {
    let (b, v) = (
        base.energy.as_ref()?.energy_per_item_j,
        r.energy.as_ref()?.energy_per_item_j,
    );
    if b <= 0.0 {
        return None;
    }
    // Paired by round where both cells have rounds (the interval over rounds replaces the floor).
    if let Some(p) = paired_ratio(&base.paired_rounds(r, |x| x.energy_per_item_j)) {
        // p is baseline / variant; the saving is 1 - variant / baseline.
        let saved = |ratio: f64| 100.0 * (1.0 - 1.0 / ratio);
        return Some(EnergyChange {
            baseline_j: b,
            variant_j: v,
            saved_pct: saved(p.ratio),
            half_width_pct: (saved(p.ci95.hi) - saved(p.ci95.lo)) / 2.0,
            variant_rel: energy_rel_uncertainty(r),
        });
    }
    let ratio = v / b;
    let rel = (energy_rel_uncertainty(base).powi(2) + energy_rel_uncertainty(r).powi(2)).sqrt();
    Some(EnergyChange {
        baseline_j: b,
        variant_j: v,
        saved_pct: 100.0 * (1.0 - ratio),
        half_width_pct: 100.0 * ratio * rel,
        variant_rel: energy_rel_uncertainty(r),
    })
}

/// Every measured variant against its baseline (baselines themselves excluded).
pub fn variant_rows(records: &[Record], budget: QualityBudget) -> Vec<VariantRow> {
    records
        .iter()
        .filter(|r| r.status == Status::Ok && !r.key.technique.is_baseline())
        .filter_map(|r| {
            let base = baseline_of(records, &r.key)?;
            let quality = quality_change(base, r);
            Some(VariantRow {
                key: r.key.clone(),
                control: r.key.technique.is_control(),
                quality,
                speed: speed_change(base, r),
                energy: energy_change(base, r),
                bytes: base.model_bytes.zip(r.model_bytes),
                within_budget: quality.is_some_and(|q| q.delta_points >= -budget.max_drop_points),
                meets_99: quality.is_some_and(|q| q.variant_pct >= 0.99 * q.baseline_pct),
                meets_99_9: quality.is_some_and(|q| q.variant_pct >= 0.999 * q.baseline_pct),
            })
        })
        .collect()
}

/// The built-in A/A check: two cells of the same architecture and shapes (a control arm and the
/// technique it controls, `distill-control` and `distill`), whose latencies must agree on a
/// stable machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AaCheck {
    /// The control arm's cell.
    pub control: Cell,
    /// Its twin's cell.
    pub twin: Cell,
    /// Mean latency of the control over the twin's, paired by round; `None` without rounds.
    pub ratio: Option<crate::stats::PairedRatio>,
}

impl AaCheck {
    /// True when the twins agree within their interval; `None` when it cannot tell.
    pub fn stable(&self) -> Option<bool> {
        self.ratio.map(|p| p.ci95.contains(1.0))
    }
}

/// Every A/A pair of the run (see [`AaCheck`]).
pub fn aa_checks(records: &[Record]) -> Vec<AaCheck> {
    records
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter_map(|control| {
            let twin_technique = control.key.technique.treated_twin()?;
            let twin = records.iter().find(|t| {
                t.status == Status::Ok
                    && t.key.technique == twin_technique
                    && t.key.same_setting(&control.key)
            })?;
            Some(AaCheck {
                control: control.key.clone(),
                twin: twin.key.clone(),
                ratio: paired_ratio(&control.paired_rounds(twin, |x| Some(x.mean_ms))),
            })
        })
        .collect()
}
