//! `results.csv`: one row a cell; each column carries its unit in its name, and each energy
//! figure has a `_source` column beside it. A column that can never hold a value for what the run
//! has (its families, devices, energy meters, techniques, rounds, calibration) is left out of
//! that run's file ([`Holds`]); the schema in `reports/README.md` lists every column and what
//! fills it. Empty cells mean "not measured" (a failed cell).

use super::Exporter;
use crate::analysis::compare::{variant_rows, VariantRow};
use crate::analysis::RunData;
use crate::meter::{DomainKind, EnergyRecord};
use crate::results::Record;
use slimbench_models::dimension;

/// Writes `results.csv`.
pub struct CsvExporter;

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn f(v: f64) -> String {
    // Twelve significant digits, trailing zeros dropped, never an exponent: a micro-joule per item
    // keeps its digits (not 0.000000), and float noise (97.8 - 98 = -0.20000000000000284) is not
    // written as if it were measured.
    let text = crate::units::sig(v, 12);
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn of(v: Option<f64>) -> String {
    v.map(f).unwrap_or_default()
}

/// Energy of the domains of `kinds`, with their sources joined by `+`.
fn group(energy: &EnergyRecord, kinds: &[DomainKind]) -> (Option<f64>, String) {
    let ds: Vec<_> = energy
        .domains
        .iter()
        .filter(|d| kinds.contains(&d.kind))
        .collect();
    if ds.is_empty() {
        return (None, String::new());
    }
    let mut sources: Vec<&str> = ds.iter().map(|d| d.source.as_str()).collect();
    sources.dedup();
    (Some(ds.iter().map(|d| d.energy_j).sum()), sources.join("+"))
}

/// The columns of a record, in file order.
pub fn columns(r: &Record) -> Vec<(&'static str, String)> {
    let q = r.quality.as_ref();
    let lm = q.and_then(|q| q.language.as_ref());
    let g = r.generation.as_ref();
    let l = r.latency.as_ref();
    let e = r.energy.as_ref();
    let c = r.carbon.as_ref();
    let (cpu_j, cpu_src) = e
        .map(|e| group(e, &[DomainKind::CpuPackage, DomainKind::CpuEstimate]))
        .unwrap_or_default();
    let (ram_j, ram_src) = e
        .map(|e| group(e, &[DomainKind::Dram, DomainKind::RamEstimate]))
        .unwrap_or_default();
    let (gpu_j, gpu_src) = e.map(|e| group(e, &[DomainKind::Gpu])).unwrap_or_default();
    let build = crate::analysis::projection::variant_build_cost(r);
    let layers: Vec<String> = r
        .layers
        .iter()
        .map(|l| format!("{}={}", l.name, l.format))
        .collect();
    let mut cols = vec![
        ("schema_version", r.schema_version.to_string()),
        ("run_id", r.run_id.clone()),
        ("timestamp_utc", r.timestamp_utc.clone()),
        ("host_cpu_model", r.host.cpu_model.clone()),
        ("host_logical_cores", r.host.logical_cores.to_string()),
        ("host_os", r.host.os.clone()),
        (
            "host_total_memory_bytes",
            r.host.total_memory_bytes.to_string(),
        ),
        ("model", r.key.model.clone()),
        ("technique", r.key.technique.to_string()),
        ("technique_params", r.technique_params.to_string()),
        ("device", r.key.device.clone()),
        ("engine", r.key.engine.name().to_string()),
        ("threads", opt(r.threads)),
        ("batch_size", r.key.batch_size.to_string()),
    ];
    // Each plan dimension beyond the batch size, in its own column (empty where the cell's family
    // does not have it).
    cols.extend(
        dimension::all()
            .into_iter()
            .map(|d| (d.csv_column, opt(r.key.dim(d)))),
    );
    cols.extend([
        ("status", r.status.as_str().to_string()),
        ("error", r.error.clone().unwrap_or_default()),
        ("parameter_count", opt(r.parameter_count)),
        ("nonzero_parameter_count", opt(r.nonzero_parameter_count)),
        ("model_bytes", opt(r.model_bytes)),
        ("layer_formats", layers.join(";")),
        (
            "quality_metric",
            q.map(|q| q.metric.clone()).unwrap_or_default(),
        ),
        ("quality_pct", of(q.map(|q| q.value_pct))),
        ("quality_baseline_pct", of(q.map(|q| q.baseline_pct))),
        ("quality_delta_points", of(q.map(|q| q.delta_points))),
        ("fidelity_cosine", of(q.and_then(|q| q.fidelity))),
        ("perplexity", of(lm.map(|m| m.perplexity))),
        ("perplexity_err", of(lm.map(|m| m.perplexity_err))),
        (
            "reference_perplexity",
            of(lm.map(|m| m.reference_perplexity)),
        ),
        ("kld_mean_nats", of(lm.map(|m| m.kld_mean))),
        ("kld_p99_nats", of(lm.map(|m| m.kld_p99))),
        ("top1_agreement_pct", of(lm.map(|m| m.top1_agreement_pct))),
        (
            "flops_per_item",
            of(r.compute.as_ref().map(|c| c.flops_per_item)),
        ),
        (
            "achieved_gflop_per_s",
            of(r.compute.as_ref().map(|c| c.achieved_gflops)),
        ),
        (
            "peak_gflop_per_s",
            of(r.compute.as_ref().and_then(|c| c.peak_gflops)),
        ),
        (
            "peak_fraction",
            of(r.compute.as_ref().and_then(|c| c.peak_fraction)),
        ),
        (
            "peak_kind",
            r.compute
                .as_ref()
                .and_then(|c| c.peak_kind.clone())
                .unwrap_or_default(),
        ),
        (
            "weight_read_gb_per_s",
            of(r.compute.as_ref().and_then(|c| c.weight_read_gbs)),
        ),
        (
            "bandwidth_fraction",
            of(r.compute.as_ref().and_then(|c| c.bandwidth_fraction)),
        ),
        ("latency_mean_ms", of(l.map(|l| l.mean_ms))),
        ("latency_p50_ms", of(l.map(|l| l.p50_ms))),
        ("latency_p90_ms", of(l.map(|l| l.p90_ms))),
        ("latency_p99_ms", of(l.map(|l| l.p99_ms))),
        ("latency_min_ms", of(l.map(|l| l.min_ms))),
        ("latency_max_ms", of(l.map(|l| l.max_ms))),
        ("latency_std_ms", of(l.map(|l| l.std_ms))),
        (
            "latency_mean_ci95_lo_ms",
            of(l.and_then(|l| l.mean_ci95_ms).map(|i| i.lo)),
        ),
        (
            "latency_mean_ci95_hi_ms",
            of(l.and_then(|l| l.mean_ci95_ms).map(|i| i.hi)),
        ),
        (
            "latency_p50_ci95_lo_ms",
            of(l.and_then(|l| l.p50_ci95_ms).map(|i| i.lo)),
        ),
        (
            "latency_p50_ci95_hi_ms",
            of(l.and_then(|l| l.p50_ci95_ms).map(|i| i.hi)),
        ),
        ("latency_outliers_mild", opt(l.map(|l| l.outliers.mild))),
        ("latency_outliers_severe", opt(l.map(|l| l.outliers.severe))),
        ("iterations", opt(l.map(|l| l.iterations))),
        ("window_s", of(r.window_s)),
        ("throughput_items_per_s", of(r.throughput_items_per_s)),
        ("peak_rss_bytes", opt(r.peak_rss_bytes)),
        ("model_rss_bytes", opt(r.model_rss_bytes)),
        ("inference_peak_bytes", opt(r.inference_peak_bytes)),
        (
            "energy_source",
            e.map(|e| e.source.clone()).unwrap_or_default(),
        ),
        ("energy_measured", opt(e.map(|e| e.measured))),
        ("energy_unreliable", opt(e.map(|e| e.unreliable))),
        (
            "energy_dropped_intervals",
            opt(e.map(|e| e.dropped_samples)),
        ),
        ("energy_intervals", opt(e.map(|e| e.intervals))),
        ("energy_total_j", of(e.map(|e| e.energy_total_j))),
        ("energy_per_batch_j", of(e.map(|e| e.energy_per_batch_j))),
        ("energy_per_item_j", of(e.map(|e| e.energy_per_item_j))),
        // The estimate's band (empty where measured), as JSON's `energy_low_j` and `energy_high_j`.
        ("energy_low_j", of(e.and_then(|e| e.energy_low_j))),
        ("energy_high_j", of(e.and_then(|e| e.energy_high_j))),
        (
            "energy_per_item_low_j",
            of(e.and_then(|e| e.per_item_band_j()).map(|b| b.0)),
        ),
        (
            "energy_per_item_high_j",
            of(e.and_then(|e| e.per_item_band_j()).map(|b| b.1)),
        ),
        (
            "energy_estimate_model",
            e.and_then(|e| e.estimate.as_ref())
                .map(|p| p.model.source().as_str().to_string())
                .unwrap_or_default(),
        ),
        (
            "energy_estimate_vcpu_min_w",
            of(e.and_then(|e| e.estimate.as_ref()).map(|p| p.power.min_w)),
        ),
        (
            "energy_estimate_vcpu_max_w",
            of(e.and_then(|e| e.estimate.as_ref()).map(|p| p.power.max_w)),
        ),
        (
            "energy_estimate_vcpus",
            opt(e.and_then(|e| e.estimate.as_ref()).map(|p| p.vcpus)),
        ),
        // Above idle only where idle power was measured: an estimate has no idle draw to see.
        (
            "energy_above_idle_j",
            of(e.and_then(|e| e.energy_above_idle_j)),
        ),
        (
            "energy_above_idle_per_item_j",
            of(e.and_then(|e| e.energy_above_idle_per_item_j)),
        ),
        ("energy_cpu_j", of(cpu_j)),
        ("energy_cpu_source", cpu_src),
        ("energy_ram_j", of(ram_j)),
        ("energy_ram_source", ram_src),
        ("energy_gpu_j", of(gpu_j)),
        ("energy_gpu_source", gpu_src),
        ("power_idle_w", of(e.and_then(|e| e.idle_power_w))),
        ("power_mean_w", of(e.map(|e| e.mean_power_w))),
        ("power_peak_w", of(e.map(|e| e.peak_power_w))),
        ("energy_window_s", of(e.map(|e| e.window_s))),
        ("energy_sampling_hz", of(e.map(|e| e.sampling_hz))),
        (
            "energy_method",
            e.map(|e| e.method.clone()).unwrap_or_default(),
        ),
        ("co2e_per_item_g", of(c.map(|c| c.co2e_per_item_g))),
        (
            "co2e_per_item_low_g",
            of(c.zip(e.and_then(|e| e.band_factors()))
                .map(|(c, b)| c.co2e_per_item_g * b.0)),
        ),
        (
            "co2e_per_item_high_g",
            of(c.zip(e.and_then(|e| e.band_factors()))
                .map(|(c, b)| c.co2e_per_item_g * b.1)),
        ),
        (
            "co2e_per_million_items_g",
            of(c.map(|c| c.co2e_per_million_items_g)),
        ),
        (
            "carbon_intensity_g_per_kwh",
            of(c.map(|c| c.intensity_g_per_kwh)),
        ),
        (
            "carbon_intensity_source",
            c.map(|c| c.intensity_source.clone()).unwrap_or_default(),
        ),
        (
            "carbon_intensity_year",
            opt(c.and_then(|c| c.intensity_year)),
        ),
        ("pue", of(c.map(|c| c.pue))),
        (
            "gpu_process_peak_bytes",
            opt(e.and_then(|e| e.gpu_process_peak_bytes)),
        ),
        (
            "gpu_device_peak_bytes",
            opt(e.and_then(|e| e.gpu_device_peak_bytes)),
        ),
        // A language model's phases; its latency, throughput and energy above are the decode
        // phase's (one item = one generated token).
        (
            "prefill_tokens_per_s",
            of(g.map(|g| g.prefill_tokens_per_s)),
        ),
        ("decode_tokens_per_s", of(g.map(|g| g.decode_tokens_per_s))),
        (
            "ttft_p50_ms",
            of(g.and_then(|g| g.ttft_ms.as_ref()).map(|t| t.p50_ms)),
        ),
        (
            "ttft_p99_ms",
            of(g.and_then(|g| g.ttft_ms.as_ref()).map(|t| t.p99_ms)),
        ),
        ("prefill_per_token_j", of(g.map(|g| g.prefill_j_per_token))),
        ("decode_per_token_j", of(g.map(|g| g.decode_j_per_token))),
        (
            "generation_energy_source",
            g.map(|g| g.energy_source.clone()).unwrap_or_default(),
        ),
        ("kv_cache_bytes", opt(g.map(|g| g.kv_cache_bytes))),
        (
            "co2e_per_1000_generated_tokens_g",
            of(g.and_then(|g| g.co2e_per_1000_generated_tokens_g)),
        ),
        ("build_s", of(build.as_ref().map(|b| b.seconds))),
        (
            "build_energy_j",
            of(build.as_ref().and_then(|b| b.energy_j)),
        ),
        (
            "build_energy_source",
            build.as_ref().map(|b| b.source.clone()).unwrap_or_default(),
        ),
        ("build_cached", opt(build.as_ref().map(|b| b.cached))),
        (
            "rounds",
            opt((!r.rounds.is_empty()).then_some(r.rounds.len())),
        ),
        (
            "disturbed_rounds",
            opt((!r.rounds.is_empty()).then(|| r.disturbance().0)),
        ),
        (
            "retried_rounds",
            opt((!r.rounds.is_empty()).then(|| r.disturbance().1)),
        ),
        (
            "steal_max_fraction",
            of(r.rounds
                .iter()
                .filter_map(|x| x.interference.map(|i| i.steal_share))
                .reduce(f64::max)),
        ),
        (
            "other_cpu_max_fraction",
            of(r.rounds
                .iter()
                .filter_map(|x| x.interference.map(|i| i.other_cpu_share))
                .reduce(f64::max)),
        ),
    ]);
    cols
}

/// The columns of a variant against its baseline (paired by round where both have rounds):
/// empty for a baseline, a failed cell, or a cell without a baseline.
pub fn relative_columns(row: Option<&VariantRow>) -> Vec<(&'static str, String)> {
    let sp = row.and_then(|r| r.speed);
    let en = row.and_then(|r| r.energy);
    vec![
        ("speedup_vs_baseline", of(sp.map(|s| s.speedup))),
        ("speedup_ci95_lo", of(sp.map(|s| s.speedup_lo))),
        ("speedup_ci95_hi", of(sp.map(|s| s.speedup_hi))),
        ("energy_saved_pct", of(en.map(|e| e.saved_pct))),
        (
            "energy_saved_ci95_half_pct",
            of(en.map(|e| e.half_width_pct)),
        ),
    ]
}

/// What a column needs for any cell of a run to hold a value in it; a run without it leaves the
/// column out of its `results.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// Every run.
    Always,
    /// A model whose family has this plan dimension.
    Dimension(&'static dimension::Dimension),
    /// A text embedding model (fidelity of its embeddings).
    TextModel,
    /// A model whose quality has a fidelity: a text embedding model, or a user's ONNX model (its
    /// outputs' cosine to the fp32 graph's).
    Fidelity,
    /// A language model (its phases, perplexity, KL divergence).
    LanguageModel,
    /// A cell on a GPU.
    Gpu,
    /// Energy measured by a meter (its idle power, energy above idle).
    MeasuredEnergy,
    /// Energy estimated (its model, band and coefficients).
    EstimatedEnergy,
    /// A peak measured by `slimbench calibrate` on the machine.
    Calibration,
    /// A technique other than the baseline (build costs, ratios to the baseline).
    Variants,
    /// Cells measured in rounds.
    Rounds,
}

/// The columns that need more than [`Holds::Always`]; every other column is always written.
pub const COLUMN_NEEDS: &[(&str, Holds)] = &[
    ("fidelity_cosine", Holds::Fidelity),
    ("perplexity", Holds::LanguageModel),
    ("perplexity_err", Holds::LanguageModel),
    ("reference_perplexity", Holds::LanguageModel),
    ("kld_mean_nats", Holds::LanguageModel),
    ("kld_p99_nats", Holds::LanguageModel),
    ("top1_agreement_pct", Holds::LanguageModel),
    ("peak_gflop_per_s", Holds::Calibration),
    ("peak_fraction", Holds::Calibration),
    ("peak_kind", Holds::Calibration),
    ("bandwidth_fraction", Holds::Calibration),
    ("energy_low_j", Holds::EstimatedEnergy),
    ("energy_high_j", Holds::EstimatedEnergy),
    ("energy_per_item_low_j", Holds::EstimatedEnergy),
    ("energy_per_item_high_j", Holds::EstimatedEnergy),
    ("energy_estimate_model", Holds::EstimatedEnergy),
    ("energy_estimate_vcpu_min_w", Holds::EstimatedEnergy),
    ("energy_estimate_vcpu_max_w", Holds::EstimatedEnergy),
    ("energy_estimate_vcpus", Holds::EstimatedEnergy),
    ("co2e_per_item_low_g", Holds::EstimatedEnergy),
    ("co2e_per_item_high_g", Holds::EstimatedEnergy),
    ("energy_above_idle_j", Holds::MeasuredEnergy),
    ("energy_above_idle_per_item_j", Holds::MeasuredEnergy),
    ("power_idle_w", Holds::MeasuredEnergy),
    ("energy_gpu_j", Holds::Gpu),
    ("energy_gpu_source", Holds::Gpu),
    ("gpu_process_peak_bytes", Holds::Gpu),
    ("gpu_device_peak_bytes", Holds::Gpu),
    ("prefill_tokens_per_s", Holds::LanguageModel),
    ("decode_tokens_per_s", Holds::LanguageModel),
    ("ttft_p50_ms", Holds::LanguageModel),
    ("ttft_p99_ms", Holds::LanguageModel),
    ("prefill_per_token_j", Holds::LanguageModel),
    ("decode_per_token_j", Holds::LanguageModel),
    ("generation_energy_source", Holds::LanguageModel),
    ("kv_cache_bytes", Holds::LanguageModel),
    ("co2e_per_1000_generated_tokens_g", Holds::LanguageModel),
    ("build_s", Holds::Variants),
    ("build_energy_j", Holds::Variants),
    ("build_energy_source", Holds::Variants),
    ("build_cached", Holds::Variants),
    ("rounds", Holds::Rounds),
    ("disturbed_rounds", Holds::Rounds),
    ("retried_rounds", Holds::Rounds),
    ("steal_max_fraction", Holds::Rounds),
    ("other_cpu_max_fraction", Holds::Rounds),
    ("speedup_vs_baseline", Holds::Variants),
    ("speedup_ci95_lo", Holds::Variants),
    ("speedup_ci95_hi", Holds::Variants),
    ("energy_saved_pct", Holds::Variants),
    ("energy_saved_ci95_half_pct", Holds::Variants),
];

/// What column `name` needs: a plan dimension's column needs a cell with that dimension.
pub fn needs(name: &str) -> Holds {
    if let Some(d) = dimension::all().into_iter().find(|d| d.csv_column == name) {
        return Holds::Dimension(d);
    }
    COLUMN_NEEDS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(Holds::Always, |(_, h)| *h)
}

/// True when some cell of `data`'s run can hold a value in a column that needs `holds`: its plan
/// (the cells, failed ones included) and settings decide, not which cells happened to succeed.
pub fn run_has(data: &RunData, holds: Holds) -> bool {
    let records = &data.records;
    let language = |r: &Record| r.key.dim(&dimension::GEN_TOKENS).is_some();
    match holds {
        Holds::Always => true,
        Holds::Dimension(d) => records.iter().any(|r| r.key.dim(d).is_some()),
        Holds::TextModel => records
            .iter()
            .any(|r| r.key.dim(&dimension::SEQ_LEN).is_some() && !language(r)),
        Holds::Fidelity => {
            run_has(data, Holds::TextModel)
                || records
                    .iter()
                    .any(|r| slimbench_models::catalog::is_user_model(&r.key.model))
        }
        Holds::LanguageModel => records.iter().any(language),
        Holds::Gpu => records.iter().any(|r| r.key.device != "cpu"),
        Holds::MeasuredEnergy => records
            .iter()
            .any(|r| r.energy.as_ref().is_some_and(|e| e.measured)),
        Holds::EstimatedEnergy => records
            .iter()
            .any(|r| r.energy.as_ref().is_some_and(|e| !e.measured)),
        Holds::Calibration => records.iter().any(|r| {
            r.compute
                .as_ref()
                .is_some_and(|c| c.peak_gflops.is_some() || c.bandwidth_fraction.is_some())
        }),
        Holds::Variants => records.iter().any(|r| !r.key.technique.is_baseline()),
        Holds::Rounds => records.iter().any(|r| !r.rounds.is_empty()),
    }
}

/// The header of `results.csv`.
pub fn header() -> Vec<&'static str> {
    use crate::host::HostInfo;
    use crate::results::Status;
    use slimbench_models::workload::Cell;
    let dummy = Record::empty(
        "",
        Cell::new("", Default::default(), "", 0),
        HostInfo {
            cpu_model: String::new(),
            logical_cores: 0,
            physical_cores: None,
            os: String::new(),
            total_memory_bytes: 0,
        },
        Status::Ok,
    );
    columns(&dummy)
        .into_iter()
        .chain(relative_columns(None))
        .map(|(k, _)| k)
        .collect()
}

impl Exporter for CsvExporter {
    fn export(&self, data: &RunData) -> anyhow::Result<Vec<u8>> {
        let mut w = ::csv::Writer::from_writer(Vec::new());
        let kept: Vec<bool> = header()
            .iter()
            .map(|name| run_has(data, needs(name)))
            .collect();
        let keep = |row: Vec<String>| -> Vec<String> {
            row.into_iter()
                .zip(&kept)
                .filter(|(_, k)| **k)
                .map(|(v, _)| v)
                .collect()
        };
        w.write_record(keep(header().into_iter().map(String::from).collect()))?;
        let rows = variant_rows(&data.records, data.budget());
        for r in &data.records {
            let row = rows.iter().find(|v| v.key == r.key);
            w.write_record(keep(
                columns(r)
                    .into_iter()
                    .chain(relative_columns(row))
                    .map(|(_, v)| v)
                    .collect(),
            ))?;
        }
        w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_with_a_need_is_a_column() {
        let all = header();
        for (name, _) in COLUMN_NEEDS {
            assert!(all.contains(name), "{name} is not a results.csv column");
        }
    }
}
