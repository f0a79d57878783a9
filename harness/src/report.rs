//! What the sustainability report says, computed from a run's records alone: each variant against
//! its baseline, the best variant within a quality budget, and a projection for a stated volume.
//! Pure functions: nothing here reads the clock or the hardware.

use serde::Serialize;

use crate::carbon::{co2e_g, CarbonSettings, CAR_G_PER_KM};
use crate::results::{CellKey, Record, Status};
use crate::runner::manifest::Manifest;

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
        let path = dir.join("results.jsonl");
        let records = if path.exists() {
            crate::results::order_by_plan(crate::results::read_records(&path)?, &manifest.plan)
        } else {
            Vec::new()
        };
        let mut traces = std::collections::BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(dir.join("traces")) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "csv") {
                    if let (Some(stem), Ok(text)) = (
                        p.file_stem().and_then(|s| s.to_str()),
                        std::fs::read_to_string(&p),
                    ) {
                        traces.insert(stem.to_string(), text);
                    }
                }
            }
        }
        Ok(Self {
            manifest,
            records,
            traces,
        })
    }
}

/// How far quality may fall for a variant to count as equivalent (MLPerf's 99% tier in spirit).
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

/// A variant against the baseline of the same model, device and batch size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantRow {
    /// The cell.
    pub key: CellKey,
    /// Quality change, points.
    pub quality_delta_points: Option<f64>,
    /// Baseline median latency over the variant's (above 1: faster).
    pub speedup: Option<f64>,
    /// Energy per item saved, % of the baseline's (negative: more energy).
    pub energy_saved_pct: Option<f64>,
    /// CO2e per item saved, %.
    pub co2e_saved_pct: Option<f64>,
    /// Size as a fraction of the baseline's.
    pub size_ratio: Option<f64>,
    /// True when the quality drop is within the budget.
    pub within_budget: bool,
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
}

/// The best variant of one model, device and batch size within the budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BestVariant {
    /// Its comparison with the baseline.
    pub row: VariantRow,
    /// Its energy per item, J.
    pub energy_per_item_j: f64,
    /// The baseline's energy per item, J.
    pub baseline_energy_per_item_j: f64,
    /// What it saves at the volume.
    pub projection: Projection,
}

fn baseline_of<'a>(records: &'a [Record], key: &CellKey) -> Option<&'a Record> {
    records.iter().find(|r| {
        r.status == Status::Ok
            && r.key.technique == slimbench_models::catalog::BASELINE
            && r.key.same_setting(key)
    })
}

fn saved_pct(base: f64, variant: f64) -> Option<f64> {
    (base > 0.0).then(|| 100.0 * (1.0 - variant / base))
}

/// Every measured variant against its baseline (baselines themselves excluded).
pub fn variant_rows(records: &[Record], budget: QualityBudget) -> Vec<VariantRow> {
    records
        .iter()
        .filter(|r| {
            r.status == Status::Ok && r.key.technique != slimbench_models::catalog::BASELINE
        })
        .filter_map(|r| {
            let base = baseline_of(records, &r.key)?;
            let delta = r.quality.as_ref().map(|q| q.delta_points);
            let lat = |x: &Record| x.latency.as_ref().map(|l| l.p50_ms);
            let energy = |x: &Record| x.energy.as_ref().map(|e| e.energy_per_item_j);
            let co2 = |x: &Record| x.carbon.as_ref().map(|c| c.co2e_per_item_g);
            Some(VariantRow {
                key: r.key.clone(),
                quality_delta_points: delta,
                speedup: lat(base)
                    .zip(lat(r))
                    .and_then(|(b, v)| (v > 0.0).then(|| b / v)),
                energy_saved_pct: energy(base)
                    .zip(energy(r))
                    .and_then(|(b, v)| saved_pct(b, v)),
                co2e_saved_pct: co2(base).zip(co2(r)).and_then(|(b, v)| saved_pct(b, v)),
                size_ratio: base
                    .model_bytes
                    .zip(r.model_bytes)
                    .and_then(|(b, v)| (b > 0).then(|| v as f64 / b as f64)),
                within_budget: delta.is_some_and(|d| d >= -budget.max_drop_points),
            })
        })
        .collect()
}

/// What saving `baseline_j - variant_j` joules per item is worth at `volume`.
pub fn project(
    baseline_j: f64,
    variant_j: f64,
    carbon: &CarbonSettings,
    volume: Volume,
) -> Projection {
    let joules = (baseline_j - variant_j) * volume.items_per_day * volume.days;
    let grams = co2e_g(joules, carbon.intensity_g_per_kwh, carbon.pue);
    Projection {
        kwh_saved: joules / 3.6e6,
        kg_co2e_saved: grams / 1e3,
        car_km: grams / CAR_G_PER_KM,
    }
}

/// For each model, device and batch size, the variant within `budget` with the least energy per
/// item, if any uses less than the baseline.
pub fn best_variants(
    records: &[Record],
    budget: QualityBudget,
    carbon: &CarbonSettings,
    volume: Volume,
) -> Vec<BestVariant> {
    let rows = variant_rows(records, budget);
    let mut groups: Vec<&CellKey> = Vec::new();
    for r in &rows {
        if !groups.iter().any(|g| g.same_setting(&r.key)) {
            groups.push(&r.key);
        }
    }
    let energy_of = |k: &CellKey| {
        records
            .iter()
            .find(|r| &r.key == k)
            .and_then(|r| r.energy.as_ref())
            .map(|e| e.energy_per_item_j)
    };
    let mut out = Vec::new();
    for group in groups {
        let best = rows
            .iter()
            .filter(|r| r.within_budget && r.key.same_setting(group))
            .filter_map(|r| energy_of(&r.key).map(|e| (r, e)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((row, e)) = best else { continue };
        let Some(base) = baseline_of(records, &row.key).and_then(|b| energy_of(&b.key)) else {
            continue;
        };
        if e >= base {
            continue;
        }
        out.push(BestVariant {
            row: row.clone(),
            energy_per_item_j: e,
            baseline_energy_per_item_j: base,
            projection: project(base, e, carbon, volume),
        });
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

/// The method and its caveats, in plain words, for both report formats.
pub fn method_text(data: &RunData) -> Vec<String> {
    let (_, measured) = energy_sources(&data.records);
    let mut out = vec![
        "Each cell (model x technique x device x batch size) ran in a fresh worker process after warm-up; timed iterations ran until both a minimum count and a minimum duration were reached. Latency is per batch; percentiles use linear interpolation (type 7); intervals are bootstrap 95% intervals.".to_string(),
        "Quality is test accuracy on the held-out split (359 digits), and its change is against the uncompressed model on the same split.".to_string(),
        "Energy per item is the energy of the timed window divided by the items processed; idle power was measured just before each cell, and energy above idle is reported beside the total.".to_string(),
        format!(
            "CO2e = energy (kWh) x PUE ({}) x grid intensity ({} g/kWh: {}).",
            data.manifest.spec.carbon.pue,
            data.manifest.spec.carbon.intensity_g_per_kwh,
            data.manifest.spec.carbon.source
        ),
        format!("Car equivalent: {}.", crate::carbon::CAR_FACTOR_SOURCE),
    ];
    if !measured {
        out.push("CAVEAT: energy here is ESTIMATED (estimated-tdp), not measured: CPU time x a per-thread share of the CPU's TDP, plus a RAM model. It ranks variants by the CPU time they use; it cannot see idle draw, frequency scaling or the memory system. Measure with RAPL or NVML before reporting absolute figures.".to_string());
    }
    out.push("Projections multiply a per-item saving measured on this machine by a volume; real deployments batch, idle and scale differently.".to_string());
    out
}
