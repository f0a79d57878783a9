//! What the sustainability report says, computed from a run's records alone: each variant against
//! its baseline, the best variant within a quality budget, and a projection for a stated volume.
//! Pure functions: nothing here reads the clock or the hardware.

use serde::Serialize;

use crate::carbon::{co2e_g, CarbonSettings, CAR_G_PER_KM};
use crate::export::numbers::sig;
use crate::results::{Record, Status};
use crate::runner::manifest::Manifest;
use crate::stats::{mcnemar_exact_p, paired_difference_half_width, paired_ratio, t_interval};
use slimbench_models::workload::Cell;

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

fn speed_change(base: &Record, r: &Record) -> Option<SpeedChange> {
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

/// The projection of a variant's saving at a volume.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Projection {
    /// Energy saved, kWh (negative: more used).
    pub kwh_saved: f64,
    /// CO2e saved, kg.
    pub kg_co2e_saved: f64,
    /// The same in kilometres driven by a typical passenger car.
    pub car_km: f64,
    /// The estimate's band of the energy saved, kWh (low, high): both cells' energy under the
    /// low, then the high, coefficients. `None` where the energy was measured.
    pub kwh_band: Option<(f64, f64)>,
}

impl Projection {
    /// The band scaled to another unit of the same saving (CO2e, car distance): each is
    /// proportional to the energy saved.
    pub fn band_of(&self, central: f64) -> Option<(f64, f64)> {
        let (lo, hi) = self.kwh_band?;
        (self.kwh_saved != 0.0).then(|| {
            let (a, b) = (central * lo / self.kwh_saved, central * hi / self.kwh_saved);
            (a.min(b), a.max(b))
        })
    }
}

/// What saving `baseline_j - variant_j` joules per item is worth at `volume`; `band` holds the
/// baseline's and the variant's band factors (low, high) where the figures are estimates.
pub fn project(
    baseline_j: f64,
    variant_j: f64,
    band: Option<((f64, f64), (f64, f64))>,
    carbon: &CarbonSettings,
    volume: Volume,
) -> Projection {
    let items = volume.items_per_day * volume.days;
    let joules = (baseline_j - variant_j) * items;
    let grams = co2e_g(joules, carbon.intensity_g_per_kwh, carbon.pue);
    let kwh_band = band.map(|(b, v)| {
        let low = (baseline_j * b.0 - variant_j * v.0) * items / 3.6e6;
        let high = (baseline_j * b.1 - variant_j * v.1) * items / 3.6e6;
        (low.min(high), low.max(high))
    });
    Projection {
        kwh_saved: joules / 3.6e6,
        kg_co2e_saved: grams / 1e3,
        car_km: grams / CAR_G_PER_KM,
        kwh_band,
    }
}

/// The band factors (low, high) of the energy of `key`'s record, where it is an estimate.
pub fn band_factors_of(records: &[Record], key: &Cell) -> Option<(f64, f64)> {
    records
        .iter()
        .find(|r| &r.key == key)?
        .energy
        .as_ref()?
        .band_factors()
}

/// What making a variant cost (its training steps and post-training step, not the base it
/// shares with the uncompressed model), and when the energy it saves per inference repays it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildSummary {
    /// Wall time of the steps, s.
    pub seconds: f64,
    /// Their energy, J (`None` where any step was not metered).
    pub energy_j: Option<f64>,
    /// The sources of that energy, `+`-joined.
    pub source: String,
    /// True when every step was read from the cache (its cost recorded when it was built).
    pub cached: bool,
    /// Inferences after which the energy saved repays the build energy.
    pub payback_items: Option<f64>,
    /// The same in days at the projection's volume.
    pub payback_days: Option<f64>,
}

/// The build cost of `record`'s variant, with its payback at `saved_j_per_item` and `volume`;
/// `None` when no build step of the variant was recorded.
pub fn build_summary(
    record: &Record,
    saved_j_per_item: f64,
    volume: Volume,
) -> Option<BuildSummary> {
    let mut summary = variant_build_cost(record)?;
    summary.payback_items = summary
        .energy_j
        .filter(|_| saved_j_per_item > 0.0)
        .map(|j| j / saved_j_per_item);
    summary.payback_days = summary
        .payback_items
        .map(|n| n / volume.items_per_day.max(f64::MIN_POSITIVE));
    Some(summary)
}

/// What the steps that made `record`'s variant out of its base cost together (no payback);
/// `None` when none was recorded.
pub fn variant_build_cost(record: &Record) -> Option<BuildSummary> {
    let steps: Vec<_> = record
        .build
        .iter()
        .filter(|c| c.makes_the_variant())
        .collect();
    if steps.is_empty() {
        return None;
    }
    let mut sources: Vec<String> = Vec::new();
    for c in &steps {
        let label = c
            .energy_source
            .clone()
            .unwrap_or_else(|| "not metered".into());
        if !sources.contains(&label) {
            sources.push(label);
        }
    }
    Some(BuildSummary {
        seconds: steps.iter().map(|c| c.seconds).sum(),
        energy_j: steps.iter().map(|c| c.energy_j).sum(),
        source: sources.join("+"),
        cached: steps.iter().all(|c| c.cached),
        payback_items: None,
        payback_days: None,
    })
}

/// The recommendation for one model, device and batch size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    /// The baseline cell of the setting.
    pub baseline: Cell,
    /// The variant to ship; `None`: keep the baseline (no variant within the budget saves energy
    /// beyond the uncertainty).
    pub pick: Option<VariantRow>,
    /// Other variants within the budget whose energy is tied with the pick's (inside the
    /// uncertainty); the pick was chosen among them by quality, then size.
    pub tied_with: Vec<String>,
    /// Why, in one or two sentences, with the margins and their uncertainty.
    pub reason: String,
    /// What the pick saves at the volume.
    pub projection: Option<Projection>,
    /// What making the pick cost, and its payback.
    pub build: Option<BuildSummary>,
    /// The projection's energy saved net of the build energy, kWh.
    pub kwh_saved_net: Option<f64>,
}

/// For each model, device and batch size: the variant to ship. Control arms are never picked. Among
/// the variants within the quality budget, the one with the least energy per item, and every
/// variant whose energy is within the uncertainty of it, are tied; the tie is broken by quality
/// (a difference inside the binomial interval is itself a tie), then by size. When even the pick's
/// saving lies inside its uncertainty, the recommendation is to keep the baseline.
pub fn recommendations(
    records: &[Record],
    budget: QualityBudget,
    carbon: &CarbonSettings,
    volume: Volume,
) -> Vec<Recommendation> {
    let rows = variant_rows(records, budget);
    let baselines = records
        .iter()
        .filter(|r| r.status == Status::Ok && r.key.technique.is_baseline());
    let mut out = Vec::new();
    for base in baselines {
        let group: Vec<&VariantRow> = rows
            .iter()
            .filter(|r| r.key.same_setting(&base.key))
            .collect();
        if group.is_empty() {
            continue;
        }
        let eligible: Vec<&VariantRow> = group
            .iter()
            .copied()
            .filter(|r| !r.control && r.within_budget && r.energy.is_some())
            .collect();
        let energy = |r: &VariantRow| r.energy.map_or(f64::INFINITY, |e| e.variant_j);
        let Some(lowest) = eligible
            .iter()
            .copied()
            .min_by(|a, b| energy(a).total_cmp(&energy(b)))
        else {
            out.push(Recommendation {
                baseline: base.key.clone(),
                pick: None,
                tied_with: Vec::new(),
                reason: format!(
                    "keep {}: no variant stays within {} point(s) of its quality",
                    base.key.technique, budget.max_drop_points
                ),
                projection: None,
                build: None,
                kwh_saved_net: None,
            });
            continue;
        };
        let unc = |r: &VariantRow| r.energy.map_or(0.0, |e| e.variant_j * e.variant_rel);
        let tied: Vec<&VariantRow> = eligible
            .iter()
            .copied()
            .filter(|r| {
                let bound = (unc(r).powi(2) + unc(lowest).powi(2)).sqrt();
                energy(r) - energy(lowest) <= bound
            })
            .collect();
        let quality = |r: &VariantRow| r.quality.map_or(f64::NEG_INFINITY, |q| q.variant_pct);
        let best_quality = tied
            .iter()
            .copied()
            .max_by(|a, b| quality(a).total_cmp(&quality(b)))
            .unwrap_or(lowest);
        let as_good: Vec<&VariantRow> = tied
            .iter()
            .copied()
            .filter(|r| match (r.quality, best_quality.quality) {
                (Some(q), Some(best)) => {
                    best.variant_pct - q.variant_pct
                        <= accuracy_difference_half_width(
                            best.variant_pct,
                            q.variant_pct,
                            records
                                .iter()
                                .find(|x| x.key == r.key)
                                .and_then(|x| x.quality.as_ref())
                                .map_or(0, |x| x.items),
                        )
                }
                _ => true,
            })
            .collect();
        let size = |r: &VariantRow| r.bytes.map_or(usize::MAX, |(_, v)| v);
        let pick = as_good
            .iter()
            .copied()
            .min_by(|a, b| size(a).cmp(&size(b)).then(energy(a).total_cmp(&energy(b))))
            .unwrap_or(lowest);
        let tied_with: Vec<String> = tied
            .iter()
            .filter(|r| r.key != pick.key)
            .map(|r| r.key.technique.to_string())
            .collect();
        let e = pick.energy.expect("eligible rows have energy");
        if e.saved_pct <= e.half_width_pct {
            out.push(Recommendation {
                baseline: base.key.clone(),
                pick: None,
                tied_with: Vec::new(),
                reason: format!(
                    "keep {}: the best variant within the budget, {}, saves {:+.0}% +/- {:.0}% energy per item, inside the uncertainty",
                    base.key.technique, pick.key.technique, e.saved_pct, e.half_width_pct
                ),
                projection: None,
                build: None,
                kwh_saved_net: None,
            });
            continue;
        }
        let mut reason = format!(
            "{:.0}% +/- {:.1}% less energy per item than {}",
            e.saved_pct, e.half_width_pct, base.key.technique
        );
        if let Some(q) = pick.quality {
            reason.push_str(&format!(
                "; quality {:+.2} +/- {:.2} points{}",
                q.delta_points,
                q.half_width_points,
                if q.is_tie() { " (a tie)" } else { "" }
            ));
        }
        if let Some(r) = pick.size_ratio() {
            reason.push_str(&format!("; {:.0}% of its size", 100.0 * r));
        }
        if !tied_with.is_empty() {
            reason.push_str(&format!(
                ". Tied on energy with {} (inside the uncertainty): chosen by quality, then size",
                tied_with.join(", ")
            ));
        }
        let projection = project(
            e.baseline_j,
            e.variant_j,
            band_factors_of(records, &base.key).zip(band_factors_of(records, &pick.key)),
            &own_carbon(records, &pick.key, carbon),
            volume,
        );
        let build = records
            .iter()
            .find(|r| r.key == pick.key)
            .and_then(|r| build_summary(r, e.baseline_j - e.variant_j, volume));
        if let Some(b) = &build {
            match (b.energy_j, b.payback_items) {
                (Some(j), Some(n)) => reason.push_str(&format!(
                    "; building it took {} s and {} J ({}{}), repaid after {} inferences ({} days at {} a day)",
                    sig(b.seconds, 3),
                    sig(j, 3),
                    b.source,
                    if b.cached { ", recorded when built" } else { "" },
                    sig(n, 3),
                    sig(b.payback_days.unwrap_or(f64::NAN), 3),
                    sig(volume.items_per_day, 3)
                )),
                _ => reason.push_str(&format!(
                    "; building it took {} s (energy not metered)",
                    sig(b.seconds, 3)
                )),
            }
        }
        out.push(Recommendation {
            baseline: base.key.clone(),
            pick: Some(pick.clone()),
            tied_with,
            reason,
            kwh_saved_net: build
                .as_ref()
                .and_then(|b| b.energy_j)
                .map(|j| projection.kwh_saved - j / 3.6e6),
            projection: Some(projection),
            build,
        });
    }
    out
}

/// The run's carbon settings with the intensity and PUE that `key`'s record used (shares merged
/// with different settings keep their own).
fn own_carbon(records: &[Record], key: &Cell, carbon: &CarbonSettings) -> CarbonSettings {
    let mut own = carbon.clone();
    if let Some(c) = records
        .iter()
        .find(|r| &r.key == key)
        .and_then(|r| r.carbon.as_ref())
    {
        own.intensity_g_per_kwh = c.intensity_g_per_kwh;
        own.pue = c.pue;
        own.source = c.intensity_source.clone();
    }
    own
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

/// The banner atop a report whose energy is not all measured, for both report formats.
pub fn estimate_banner(records: &[Record]) -> Option<String> {
    let (sources, measured) = energy_sources(records);
    (!measured).then(|| {
        format!(
            "Energy in this report is ESTIMATED ({}), not measured. Relative savings compare cells estimated alike; every absolute figure carries its band [low-high]. See Method and caveats.",
            sources.join(", ")
        )
    })
}

/// The method and its caveats, in plain words, for both report formats.
pub fn method_text(data: &RunData) -> Vec<String> {
    let (_, measured) = energy_sources(&data.records);
    let mut out = vec![
        "Each cell (model x technique x device x batch size) ran in a fresh worker process after warm-up; timed iterations ran until both a minimum count and a minimum duration were reached. Latency is per batch; percentiles use linear interpolation (type 7). The mean's 95% interval is mean +/- 1.96 standard errors over every iteration; the median's is a percentile bootstrap (1,000 resamples, seeded) of the samples the record keeps.".to_string(),
        "Speed-up and energy per item use one statistic, the mean over the timed window: speed-up is the ratio of mean latencies (its interval from both means' intervals), energy per item the window's energy over the items it processed. A difference inside its 95% interval is reported as a tie.".to_string(),
        "Quality is each family's metric on its held-out items (accuracy for classifiers, spam accuracy of a probe on the embeddings for text encoders, top-1 agreement with the reference for language models), and its change is against the uncompressed model on the same items. Where both answered the same classification items, the change is tested pairwise: McNemar's exact test on the items only one of them got right (p >= 0.05 is a tie), with the 95% interval of the paired difference (Wald with Agresti and Min's adjustment); n is the number of items. Elsewhere (and between two variants in a tie-break) two independent binomial intervals are used. Text fidelity and language-model KL divergence are means over items.".to_string(),
        match carbon_settings_used(&data.records).as_slice() {
            used if used.len() > 1 => format!(
                "CO2e = energy (kWh) x PUE x grid intensity, with each cell's own settings: this run joins shares measured with different ones ({}).",
                used.iter()
                    .map(|(i, s, p, n)| format!("{i} g/kWh ({s}), PUE {p}: {n} cells"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            _ => format!(
                "CO2e = energy (kWh) x PUE ({}) x grid intensity ({} g/kWh: {}).",
                data.manifest.spec.carbon.pue,
                data.manifest.spec.carbon.intensity_g_per_kwh,
                data.manifest.spec.carbon.source
            ),
        },
        format!("Car equivalent: {}.", crate::carbon::CAR_FACTOR_SOURCE),
    ];
    if measured {
        out.push("Idle power was measured just before each cell; energy above idle is in results.csv beside the total.".to_string());
    }
    if !measured {
        let (sources, _) = energy_sources(&data.records);
        let model = data
            .records
            .iter()
            .find_map(|r| r.energy.as_ref()?.estimate.as_ref())
            .map(|p| p.describe())
            .unwrap_or_default();
        out.push(format!(
            "CAVEAT: energy here is ESTIMATED ({}), not measured: {model}. It cannot see idle draw, frequency scaling or the memory system, so no figure above idle is given.",
            sources.join(", ")
        ));
        out.push("Relative figures (a variant's energy saved against its baseline, speed-ups) compare two cells estimated alike: the coefficients' level cancels, and what remains is each cell's window and CPU time. Absolute figures (J, Wh, g CO2e, yearly projections, car distance) depend on the coefficients: each is marked estimated and given with its band [low-high], the same CPU time under the coefficients of the CPU's microarchitecture and its neighbours and RAM at the low and high published per-GB figures. Measure with RAPL or NVML before reporting absolute figures as facts.".to_string());
    }
    out.push("Projections multiply a per-item saving measured on this machine by a volume; real deployments batch, idle and scale differently.".to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostInfo;
    use crate::results::RoundFigures;

    fn record(technique: &str, means: &[f64]) -> Record {
        let key = Cell {
            model: "digits-cnn".into(),
            technique: technique.parse().unwrap(),
            device: "cpu".into(),
            batch_size: 32,
            seq_len: None,
            gen_tokens: None,
        };
        let host = HostInfo {
            cpu_model: "test".into(),
            logical_cores: 2,
            physical_cores: Some(2),
            os: "test".into(),
            total_memory_bytes: 1 << 30,
        };
        let mut r = Record::empty("run", key, host, Status::Ok);
        r.rounds = means
            .iter()
            .enumerate()
            .map(|(i, &m)| RoundFigures {
                round: i + 1,
                position: 1,
                timestamp_utc: String::new(),
                iterations: 10,
                mean_ms: m,
                p50_ms: m,
                window_s: 1.0,
                energy_per_item_j: Some(m * 1e-3),
                inference_peak_bytes: None,
                samples: 0,
                interference: None,
                retries: 0,
            })
            .collect();
        r.latency = crate::stats::LatencyStats::from_samples(means);
        r
    }

    #[test]
    fn the_a_a_check_pairs_a_control_with_its_twin_and_judges_the_machine() {
        // The machine drifts by 20% between rounds, alike for both twins: they agree.
        let stable = [
            record("distill", &[1.0, 1.2, 1.1]),
            record("distill-control", &[1.01, 1.19, 1.11]),
        ];
        let checks = aa_checks(&stable);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].twin.technique.to_string(), "distill");
        assert_eq!(checks[0].stable(), Some(true));
        // One twin 30% slower in every round: they differ.
        let drifted = [
            record("distill", &[1.0, 1.2, 1.1]),
            record("distill-control", &[1.3, 1.57, 1.42]),
        ];
        assert_eq!(aa_checks(&drifted)[0].stable(), Some(false));
    }

    /// Hand-computed: a distillation of 2,000 J (recorded when built) plus a 1 J quantization,
    /// saving 0.5 mJ an inference, repays after 2,001 / 0.0005 = 4.002e6 inferences: 4.002 days at
    /// a million a day. The base it shares with the baseline is not counted.
    #[test]
    fn the_build_cost_and_its_payback_count_only_what_makes_the_variant() {
        use slimbench_models::build_cost::BuildCost;
        let cost = |step: &str, j: f64, cached: bool| BuildCost {
            step: step.into(),
            entry: String::new(),
            cached,
            seconds: 10.0,
            energy_j: Some(j),
            energy_source: Some("estimated-vcpu".into()),
            built_on: "test".into(),
            built_at_unix_s: 0,
        };
        let mut r = record("distill+q8_0", &[1.0]);
        r.build = vec![
            cost("base", 50_000.0, true),
            cost("variant", 2000.0, true),
            cost("post: distill+q8_0", 1.0, false),
        ];
        let b = build_summary(&r, 0.0005, Volume::default()).unwrap();
        assert_eq!(b.energy_j, Some(2001.0));
        assert_eq!(b.seconds, 20.0);
        assert!(!b.cached);
        assert!((b.payback_items.unwrap() - 4.002e6).abs() < 1e-3);
        assert!((b.payback_days.unwrap() - 4.002).abs() < 1e-9);
        // A variant that saves nothing never pays back.
        assert_eq!(
            build_summary(&r, 0.0, Volume::default())
                .unwrap()
                .payback_items,
            None
        );
    }

    #[test]
    fn speed_is_paired_by_round() {
        let base = record("fp32", &[2.0, 2.6, 2.2]);
        let fast = record("q8_0", &[1.0, 1.3, 1.1]);
        let s = speed_change(&base, &fast).unwrap();
        assert!(
            (s.speedup - 2.0).abs() < 1e-9 && s.speedup_lo > 1.99,
            "{s:?}"
        );
    }
}
