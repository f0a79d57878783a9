//! The variant to ship for each model, device and batch size: the least energy within the
//! quality budget, ties broken by quality then size, the baseline kept when no saving clears its
//! uncertainty.

use serde::Serialize;

use crate::results::{Record, Status};
use slimbench_models::workload::Cell;

use super::compare::{
    accuracy_difference_half_width, energy_rel_uncertainty, variant_rows, VariantRow,
};
use super::projection::{band_factors_of, build_summary, project, BuildSummary, Projection};
use super::{QualityBudget, Volume};
use crate::carbon::CarbonSettings;
use crate::units::sig;

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
            .map(|r| r.key.variant_label())
            .collect();
        let e = pick.energy.expect("eligible rows have energy");
        if e.saved_pct <= e.half_width_pct {
            out.push(Recommendation {
                baseline: base.key.clone(),
                pick: None,
                tied_with: Vec::new(),
                reason: keep_baseline_reason(
                    &base.key.technique,
                    &pick.key.technique,
                    e.saved_pct,
                    e.half_width_pct,
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

/// The (technique, engine) pair to ship for one model, device and batch size that ran on more
/// than one engine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineChoice {
    /// What each engine would ship (its own recommendation: a variant or its fp32), with its
    /// energy per item in J and that figure's relative 95% uncertainty; least energy first.
    pub candidates: Vec<(Cell, f64, f64)>,
    /// The pair to ship; `None` when the least energy is tied with another engine's (inside the
    /// uncertainty of both figures).
    pub pick: Option<Cell>,
    /// One sentence with the figures.
    pub reason: String,
}

/// Across engines: for each setting with a recommendation on two engines or more, what each
/// engine would ship (its own pick, or its fp32 when it keeps it), compared on energy per item.
/// Each engine's choice is within the quality budget of its own fp32, and the engines' fp32
/// graphs are the same model (the export is checked to 1e-4), so the budget holds across them.
/// The least energy is the pick unless another engine's lies within the uncertainty of both.
pub fn across_engines(recs: &[Recommendation], records: &[Record]) -> Vec<EngineChoice> {
    let setting = |c: &Cell| {
        (
            c.model.clone(),
            c.device.clone(),
            c.batch_size,
            c.dims.clone(),
        )
    };
    // Every engine named, its own included: the sentence compares engines.
    let on = |c: &Cell| format!("{} on {}", c.technique, c.engine);
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for r in recs {
        let key = setting(&r.baseline);
        if seen.contains(&key) {
            continue;
        }
        let group: Vec<&Recommendation> = recs
            .iter()
            .filter(|o| setting(&o.baseline) == key)
            .collect();
        seen.push(key);
        if group.len() < 2 {
            continue;
        }
        let mut candidates: Vec<(Cell, f64, f64)> = group
            .iter()
            .filter_map(|g| {
                let cell = g.pick.as_ref().map_or(&g.baseline, |p| &p.key);
                let record = records.iter().find(|x| &x.key == cell)?;
                let energy = record.energy.as_ref()?.energy_per_item_j;
                Some((cell.clone(), energy, energy_rel_uncertainty(record)))
            })
            .collect();
        if candidates.len() < 2 {
            continue;
        }
        candidates.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (best, next) = (&candidates[0], &candidates[1]);
        let bound = ((best.1 * best.2).powi(2) + (next.1 * next.2).powi(2)).sqrt();
        let tied = next.1 - best.1 <= bound;
        let figures: Vec<String> = candidates
            .iter()
            .map(|(c, e, rel)| format!("{} {} +/- {:.0}%", on(c), in_joules(*e), 100.0 * rel))
            .collect();
        let reason = if tied {
            format!(
                "a tie on energy per item between {} and {} (inside the uncertainty of both): ship \
                 either; {}",
                on(&best.0),
                on(&next.0),
                figures.join(", ")
            )
        } else {
            format!(
                "ship {}: {:.2}x less energy per item than {}, the next engine's choice; {}",
                on(&best.0),
                next.1 / best.1.max(f64::MIN_POSITIVE),
                on(&next.0),
                figures.join(", ")
            )
        };
        out.push(EngineChoice {
            pick: (!tied).then(|| best.0.clone()),
            candidates,
            reason,
        });
    }
    out
}

/// Energy in the unit that fits it (`39.1 µJ`, `0.127 J` as `127 mJ`), three figures.
fn in_joules(joules: f64) -> String {
    let scale = crate::units::energy_j(&[joules]);
    format!("{} {}", sig(scale.of(joules), 3), scale.unit)
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

/// Why the baseline stays when the variant with the least energy per item within the quality
/// budget (`best`) saves no more than the uncertainty of the difference: it either uses more
/// energy than the baseline by more than the uncertainty, or differs by less than it (a tie).
/// `saved_pct` is the saving (negative when the variant uses more), `half_width_pct` its 95%
/// half-width, both in percent of the baseline's energy per item.
fn keep_baseline_reason(
    baseline: &impl std::fmt::Display,
    best: &impl std::fmt::Display,
    saved_pct: f64,
    half_width_pct: f64,
) -> String {
    if saved_pct < -half_width_pct {
        format!(
            "keep {baseline}: every variant within the budget uses more energy per item; the \
             least, {best}, uses {:.0}% +/- {:.0}% more",
            -saved_pct, half_width_pct
        )
    } else if saved_pct < 0.0 {
        format!(
            "keep {baseline}: the best variant within the budget, {best}, uses {:.0}% +/- {:.0}% \
             more energy per item, inside the uncertainty (a tie)",
            -saved_pct, half_width_pct
        )
    } else {
        format!(
            "keep {baseline}: the best variant within the budget, {best}, saves {saved_pct:.0}% \
             +/- {half_width_pct:.0}% energy per item, inside the uncertainty (a tie)"
        )
    }
}
