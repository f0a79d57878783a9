//! What a saving per item is worth at a volume (energy, CO2e, car distance, with the estimate's
//! band), and what making a variant cost with its payback.

use serde::Serialize;

use crate::results::Record;
use slimbench_models::workload::Cell;

use super::Volume;
use crate::carbon::{co2e_g, CarbonSettings, CAR_G_PER_KM};

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
