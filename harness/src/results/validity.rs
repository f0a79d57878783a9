//! The one check of a record's values that every reader applies (`report`, `run --resume`,
//! `merge`, `compare`) and the parent applies to what a worker sends: every figure finite, in its
//! range and physically possible (latencies and energies not negative, percentiles ordered, the
//! mean between the fastest and the slowest iteration, quality in 0..100). A record that fails is
//! never rendered: the reader names the file, the line and the field.

use super::{GenerationRecord, QualityRecord, Record};
use crate::limits::{self, show_number, Limit};
use crate::meter::EnergyRecord;
use crate::stats::{Interval, LatencyStats};
use slimbench_models::dimension;

/// The longest any latency or window can be: a day, the largest `--cell-timeout`.
pub const MAX_SECONDS: f64 = 86_400.0;
/// The highest power any one machine's meter can report, W (a megawatt: no server draws it).
pub const MAX_POWER_W: f64 = 1e6;
/// The most bytes a model or a process can hold (a pebibyte).
pub const MAX_BYTES: f64 = 1_125_899_906_842_624.0;
/// The most energy one cell's window can hold, J: [`MAX_POWER_W`] for [`MAX_SECONDS`].
pub const MAX_ENERGY_J: f64 = MAX_POWER_W * MAX_SECONDS;

/// Relative slack of the ordering checks (a mean of equal samples may differ from them in its last
/// bits).
const ORDER_SLACK: f64 = 1e-9;

/// Why a record's value is impossible: the field's path in the record (`latency.mean_ms`) and the
/// rule it breaks.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// The field, as a dotted path into the record's JSON.
    pub field: String,
    /// What is wrong with its value.
    pub why: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.why)
    }
}

type Checked = Result<(), Invalid>;

fn invalid(field: &str, why: String) -> Invalid {
    Invalid {
        field: field.to_string(),
        why,
    }
}

/// `value` is finite and in `lo..=hi`.
fn in_range(field: &str, value: f64, lo: f64, hi: f64, what: &str) -> Checked {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{} is impossible for {what} (expected {} to {})",
                show_number(value),
                show_number(lo),
                show_number(hi)
            ),
        ))
    }
}

/// `value` is finite and above 0, at most `hi`.
fn positive(field: &str, value: f64, hi: f64, what: &str) -> Checked {
    if value.is_finite() && value > 0.0 && value <= hi {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{} is impossible for {what} (expected more than 0, at most {})",
                show_number(value),
                show_number(hi)
            ),
        ))
    }
}

/// `value` passes the setting's documented range (the same [`Limit`] the flag and key use).
fn within_limit(field: &str, value: f64, limit: &Limit) -> Checked {
    limit
        .check(value)
        .map(|_| ())
        .map_err(|e| invalid(field, e.0))
}

/// `a <= b`, with [`ORDER_SLACK`].
fn ordered(field: &str, a: (&str, f64), b: (&str, f64)) -> Checked {
    let slack = ORDER_SLACK * a.1.abs().max(b.1.abs());
    if a.1 <= b.1 + slack {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{} = {} exceeds {} = {}: impossible",
                a.0,
                show_number(a.1),
                b.0,
                show_number(b.1)
            ),
        ))
    }
}

/// Checks every value of `record`; the first impossible one is the error.
pub fn check_record(record: &Record) -> Checked {
    let key = &record.key;
    within_limit("batch_size", key.batch_size as f64, &limits::BATCH_SIZE)?;
    for (d, v) in key.dims.iter() {
        within_limit(d.key, v as f64, &limits::of_dimension(d))?;
    }
    if let (Some(all), Some(nonzero)) = (record.parameter_count, record.nonzero_parameter_count) {
        ordered(
            "nonzero_parameter_count",
            ("nonzero_parameter_count", nonzero as f64),
            ("parameter_count", all as f64),
        )?;
    }
    if let Some(b) = record.model_bytes {
        in_range("model_bytes", b as f64, 0.0, MAX_BYTES, "a model's bytes")?;
    }
    if let Some(b) = record.peak_rss_bytes {
        in_range(
            "peak_rss_bytes",
            b as f64,
            0.0,
            MAX_BYTES,
            "a process's memory",
        )?;
    }
    for (field, bytes) in [
        ("model_rss_bytes", record.model_rss_bytes),
        ("inference_peak_bytes", record.inference_peak_bytes),
    ] {
        if let Some(b) = bytes {
            in_range(field, b as f64, 0.0, MAX_BYTES, "a model's memory")?;
        }
    }
    if let Some(q) = &record.quality {
        check_quality(q)?;
    }
    if let Some(l) = &record.latency {
        check_latency("latency", l)?;
    }
    check_samples(
        "latency_samples_ms",
        &record.latency_samples_ms,
        record.latency.as_ref(),
    )?;
    let mut sampled = 0usize;
    for (i, round) in record.rounds.iter().enumerate() {
        let f = |name: &str| format!("rounds[{i}].{name}");
        if round.round == 0 || round.position == 0 || round.iterations == 0 {
            return Err(invalid(
                &f("round"),
                "round, position and iterations count from 1".into(),
            ));
        }
        positive(
            &f("mean_ms"),
            round.mean_ms,
            MAX_SECONDS * 1e3,
            "a latency, ms",
        )?;
        positive(
            &f("p50_ms"),
            round.p50_ms,
            MAX_SECONDS * 1e3,
            "a latency, ms",
        )?;
        positive(
            &f("window_s"),
            round.window_s,
            MAX_SECONDS,
            "a timed window, s",
        )?;
        if let Some(e) = round.energy_per_item_j {
            in_range(
                &f("energy_per_item_j"),
                e,
                0.0,
                MAX_ENERGY_J,
                "an energy, J",
            )?;
        }
        if let Some(b) = round.inference_peak_bytes {
            in_range(
                &f("inference_peak_bytes"),
                b as f64,
                0.0,
                MAX_BYTES,
                "a model's memory",
            )?;
        }
        sampled += round.samples;
    }
    if !record.rounds.is_empty() && sampled != record.latency_samples_ms.len() {
        return Err(invalid(
            "rounds",
            format!(
                "the rounds count {sampled} samples, latency_samples_ms holds {}",
                record.latency_samples_ms.len()
            ),
        ));
    }
    if let Some(w) = record.window_s {
        positive("window_s", w, MAX_SECONDS, "a timed window, s")?;
    }
    if let Some(t) = record.throughput_items_per_s {
        positive("throughput_items_per_s", t, f64::MAX, "a throughput")?;
    }
    if let Some(e) = &record.energy {
        check_energy("energy", e)?;
    }
    for (i, b) in record.build.iter().enumerate() {
        // A build (a distillation, a long fine-tune) may take far longer than a cell: a year.
        let year = 365.0 * MAX_SECONDS;
        in_range(
            &format!("build[{i}].seconds"),
            b.seconds,
            0.0,
            year,
            "a build time, s",
        )?;
        if let Some(j) = b.energy_j {
            in_range(
                &format!("build[{i}].energy_j"),
                j,
                0.0,
                MAX_POWER_W * year,
                "a build energy, J",
            )?;
        }
    }
    if let Some(c) = &record.carbon {
        in_range(
            "carbon.co2e_per_item_g",
            c.co2e_per_item_g,
            0.0,
            f64::MAX,
            "CO2e",
        )?;
        in_range(
            "carbon.co2e_per_million_items_g",
            c.co2e_per_million_items_g,
            0.0,
            f64::MAX,
            "CO2e",
        )?;
        within_limit(
            "carbon.intensity_g_per_kwh",
            c.intensity_g_per_kwh,
            &limits::CARBON_INTENSITY,
        )?;
        within_limit("carbon.pue", c.pue, &limits::PUE)?;
    }
    if let Some(t) = record.threads {
        within_limit("threads", t as f64, &limits::THREADS)?;
    }
    if let Some(c) = &record.compute {
        in_range(
            "compute.flops_per_item",
            c.flops_per_item,
            0.0,
            f64::MAX,
            "FLOPs",
        )?;
        in_range(
            "compute.achieved_gflops",
            c.achieved_gflops,
            0.0,
            f64::MAX,
            "GFLOP/s",
        )?;
        if let Some(p) = c.peak_gflops {
            positive("compute.peak_gflops", p, f64::MAX, "a peak")?;
        }
        if let Some(f) = c.peak_fraction {
            in_range(
                "compute.peak_fraction",
                f,
                0.0,
                f64::MAX,
                "a fraction of the peak",
            )?;
        }
        if let Some(g) = c.weight_read_gbs {
            in_range("compute.weight_read_gbs", g, 0.0, f64::MAX, "GB/s")?;
        }
        if let Some(f) = c.bandwidth_fraction {
            in_range("compute.bandwidth_fraction", f, 0.0, f64::MAX, "a fraction")?;
        }
    }
    for (i, layer) in record.layers.iter().enumerate() {
        in_range(
            &format!("layers[{i}].weight_sparsity"),
            layer.weight_sparsity,
            0.0,
            1.0,
            "a fraction of zero weights",
        )?;
    }
    if let Some(g) = &record.generation {
        check_generation(g)?;
    }
    Ok(())
}

fn check_quality(q: &QualityRecord) -> Checked {
    in_range("quality.value_pct", q.value_pct, 0.0, 100.0, "a percentage")?;
    in_range(
        "quality.baseline_pct",
        q.baseline_pct,
        0.0,
        100.0,
        "a percentage",
    )?;
    let delta = q.value_pct - q.baseline_pct;
    if !(q.delta_points.is_finite() && (q.delta_points - delta).abs() <= 1e-6) {
        return Err(invalid(
            "quality.delta_points",
            format!(
                "{} is not value_pct - baseline_pct = {delta}",
                q.delta_points
            ),
        ));
    }
    if let Some(t) = q.paired {
        if t.items() != q.items {
            return Err(invalid(
                "quality.paired",
                format!(
                    "its four counts sum to {} items, not the record's {}",
                    t.items(),
                    q.items
                ),
            ));
        }
    }
    if let Some(f) = q.fidelity {
        in_range(
            "quality.fidelity",
            f,
            -1.0 - 1e-6,
            1.0 + 1e-6,
            "a cosine similarity",
        )?;
    }
    if let Some(l) = &q.language {
        in_range(
            "quality.language.perplexity",
            l.perplexity,
            1.0,
            f64::MAX,
            "a perplexity",
        )?;
        in_range(
            "quality.language.perplexity_err",
            l.perplexity_err,
            0.0,
            f64::MAX,
            "a standard error",
        )?;
        in_range(
            "quality.language.reference_perplexity",
            l.reference_perplexity,
            1.0,
            f64::MAX,
            "a perplexity",
        )?;
        // A KL divergence is never negative; summing it may leave rounding of a few ulps.
        in_range(
            "quality.language.kld_mean",
            l.kld_mean,
            -1e-6,
            f64::MAX,
            "a KL divergence",
        )?;
        in_range(
            "quality.language.kld_p99",
            l.kld_p99,
            -1e-6,
            f64::MAX,
            "a KL divergence",
        )?;
        in_range(
            "quality.language.top1_agreement_pct",
            l.top1_agreement_pct,
            0.0,
            100.0,
            "a percentage",
        )?;
    }
    Ok(())
}

fn check_interval(field: &str, i: &Interval) -> Checked {
    in_range(
        &format!("{field}.lo"),
        i.lo,
        0.0,
        MAX_SECONDS * 1e3,
        "a latency, ms",
    )?;
    in_range(
        &format!("{field}.hi"),
        i.hi,
        0.0,
        MAX_SECONDS * 1e3,
        "a latency, ms",
    )?;
    ordered(field, ("lo", i.lo), ("hi", i.hi))
}

/// A latency summary: every figure finite, not negative, at most a day; the mean and median above
/// zero; min <= p50 <= p90 <= p99 <= max and the mean between min and max; at least one iteration.
pub fn check_latency(field: &str, l: &LatencyStats) -> Checked {
    let max_ms = MAX_SECONDS * 1e3;
    let f = |name: &str| format!("{field}.{name}");
    for (name, v) in [
        ("min_ms", l.min_ms),
        ("p90_ms", l.p90_ms),
        ("p99_ms", l.p99_ms),
        ("max_ms", l.max_ms),
        ("std_ms", l.std_ms),
    ] {
        in_range(&f(name), v, 0.0, max_ms, "a latency, ms")?;
    }
    positive(&f("mean_ms"), l.mean_ms, max_ms, "a latency, ms")?;
    positive(&f("p50_ms"), l.p50_ms, max_ms, "a latency, ms")?;
    let chain = [
        ("min_ms", l.min_ms),
        ("p50_ms", l.p50_ms),
        ("p90_ms", l.p90_ms),
        ("p99_ms", l.p99_ms),
        ("max_ms", l.max_ms),
    ];
    for pair in chain.windows(2) {
        ordered(&f(pair[1].0), pair[0], pair[1])?;
    }
    ordered(&f("mean_ms"), ("min_ms", l.min_ms), ("mean_ms", l.mean_ms))?;
    ordered(&f("mean_ms"), ("mean_ms", l.mean_ms), ("max_ms", l.max_ms))?;
    if l.iterations == 0 {
        return Err(invalid(
            &f("iterations"),
            "0 timed iterations cannot give a latency".into(),
        ));
    }
    if let Some(i) = &l.mean_ci95_ms {
        check_interval(&f("mean_ci95_ms"), i)?;
    }
    if let Some(i) = &l.p50_ci95_ms {
        check_interval(&f("p50_ci95_ms"), i)?;
    }
    Ok(())
}

fn check_samples(field: &str, samples: &[f64], latency: Option<&LatencyStats>) -> Checked {
    let max_ms = MAX_SECONDS * 1e3;
    for (i, &v) in samples.iter().enumerate() {
        in_range(&format!("{field}[{i}]"), v, 0.0, max_ms, "a latency, ms")?;
    }
    if let Some(l) = latency {
        if samples.len() > l.iterations {
            return Err(invalid(
                field,
                format!(
                    "{} samples kept of {} iterations: impossible",
                    samples.len(),
                    l.iterations
                ),
            ));
        }
    }
    Ok(())
}

/// An energy record: energies and powers finite and not negative (energy above idle may be
/// negative by the meter's noise, never beyond the total), windows positive and at most a day.
pub fn check_energy(field: &str, e: &EnergyRecord) -> Checked {
    let f = |name: &str| format!("{field}.{name}");
    for (name, v) in [
        ("energy_total_j", e.energy_total_j),
        ("energy_per_batch_j", e.energy_per_batch_j),
        ("energy_per_item_j", e.energy_per_item_j),
    ] {
        in_range(&f(name), v, 0.0, MAX_ENERGY_J, "an energy, J")?;
    }
    for (name, v) in [
        ("energy_above_idle_j", e.energy_above_idle_j),
        (
            "energy_above_idle_per_item_j",
            e.energy_above_idle_per_item_j,
        ),
    ] {
        if let Some(v) = v {
            in_range(&f(name), v, -MAX_ENERGY_J, MAX_ENERGY_J, "an energy, J")?;
        }
    }
    if let Some(above) = e.energy_above_idle_j {
        ordered(
            &f("energy_above_idle_j"),
            ("energy_above_idle_j", above),
            ("energy_total_j", e.energy_total_j),
        )?;
    }
    if let (Some(lo), Some(hi)) = (e.energy_low_j, e.energy_high_j) {
        in_range(&f("energy_low_j"), lo, 0.0, MAX_ENERGY_J, "an energy, J")?;
        in_range(&f("energy_high_j"), hi, 0.0, MAX_ENERGY_J, "an energy, J")?;
        ordered(
            &f("energy_low_j"),
            ("energy_low_j", lo),
            ("energy_high_j", hi),
        )?;
    }
    if let Some(idle) = e.idle_power_w {
        in_range(&f("idle_power_w"), idle, 0.0, MAX_POWER_W, "a power, W")?;
    }
    for (name, v) in [
        ("mean_power_w", e.mean_power_w),
        ("peak_power_w", e.peak_power_w),
    ] {
        in_range(&f(name), v, 0.0, MAX_POWER_W, "a power, W")?;
    }
    positive(&f("window_s"), e.window_s, MAX_SECONDS, "a window, s")?;
    if let Some(idle) = e.idle_window_s {
        in_range(&f("idle_window_s"), idle, 0.0, MAX_SECONDS, "a window, s")?;
    }
    in_range(
        &f("sampling_hz"),
        e.sampling_hz,
        0.0,
        1e9,
        "a sampling rate, Hz",
    )?;
    for (i, d) in e.domains.iter().enumerate() {
        let g = |name: &str| format!("{field}.domains[{i}].{name}");
        in_range(
            &g("energy_j"),
            d.energy_j,
            0.0,
            MAX_ENERGY_J,
            "an energy, J",
        )?;
        if let Some(idle) = d.idle_power_w {
            in_range(&g("idle_power_w"), idle, 0.0, MAX_POWER_W, "a power, W")?;
        }
        for (name, v) in [
            ("mean_power_w", d.mean_power_w),
            ("peak_power_w", d.peak_power_w),
        ] {
            in_range(&g(name), v, 0.0, MAX_POWER_W, "a power, W")?;
        }
    }
    for (name, v) in [
        ("gpu_process_peak_bytes", e.gpu_process_peak_bytes),
        ("gpu_device_peak_bytes", e.gpu_device_peak_bytes),
    ] {
        if let Some(b) = v {
            in_range(&f(name), b as f64, 0.0, MAX_BYTES, "a GPU's memory")?;
        }
    }
    Ok(())
}

fn check_generation(g: &GenerationRecord) -> Checked {
    within_limit(
        "generation.prompt_tokens",
        g.prompt_tokens as f64,
        &limits::of_dimension(&dimension::SEQ_LEN),
    )?;
    within_limit(
        "generation.gen_tokens",
        g.gen_tokens as f64,
        &limits::of_dimension(&dimension::GEN_TOKENS),
    )?;
    positive(
        "generation.prefill_tokens_per_s",
        g.prefill_tokens_per_s,
        f64::MAX,
        "a rate",
    )?;
    positive(
        "generation.decode_tokens_per_s",
        g.decode_tokens_per_s,
        f64::MAX,
        "a rate",
    )?;
    if let Some(t) = &g.ttft_ms {
        check_latency("generation.ttft_ms", t)?;
    }
    check_samples(
        "generation.ttft_samples_ms",
        &g.ttft_samples_ms,
        g.ttft_ms.as_ref(),
    )?;
    in_range(
        "generation.prefill_j_per_token",
        g.prefill_j_per_token,
        0.0,
        MAX_ENERGY_J,
        "an energy, J",
    )?;
    in_range(
        "generation.decode_j_per_token",
        g.decode_j_per_token,
        0.0,
        MAX_ENERGY_J,
        "an energy, J",
    )?;
    in_range(
        "generation.kv_cache_bytes",
        g.kv_cache_bytes as f64,
        0.0,
        MAX_BYTES,
        "a cache's bytes",
    )?;
    check_energy("generation.prefill_energy", &g.prefill_energy)?;
    if let Some(c) = g.co2e_per_1000_generated_tokens_g {
        in_range(
            "generation.co2e_per_1000_generated_tokens_g",
            c,
            0.0,
            f64::MAX,
            "CO2e",
        )?;
    }
    Ok(())
}
