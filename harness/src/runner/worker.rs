//! The worker side: builds one cell's variant, warms up, measures idle power, times iterations
//! until both a minimum count and a minimum duration are reached, evaluates quality, and returns
//! one record. Runs inside the hidden `__worker` subcommand, so its peak memory is its own.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use slimbench_models::catalog::build_workload;
use slimbench_models::workload::WorkloadSpec;
use slimbench_models::workload::{Built, VariantReport};
use slimbench_models::ModelError;

pub use super::timing::{TimingSettings, MIN_ENERGY_WINDOW_S};
use crate::calibrate::Calibration;
use crate::host::HostInfo;
use crate::memory::{current_rss_bytes, peak_rss_bytes, release_free_heap, reset_peak_rss};
use crate::meter::choose::open_meter;
use crate::meter::record::{energy_record, trace_csv, Windows};
use crate::meter::sampler::{Sample, Sampler};
use crate::recorder::LatencyRecorder;
use crate::results::{
    ComputeRecord, GenerationRecord, QualityRecord, Record, Status, MAX_KEPT_SAMPLES,
};
use crate::run_dir::{cell_slug, RunDir};
use crate::runner::manifest::RunSpec;
use crate::stats::{thin_samples, LatencyStats};
use slimbench_models::workload::Cell;

/// Environment variable of the fault injection meant for tests only: a comma-separated list of
/// `KIND:TEXT`, where a cell whose name contains TEXT fails by KIND: `panic`, `abort`, `kill`
/// (SIGKILL to itself, as an out-of-memory kill does), `hang` (until the cell timeout) or `error`.
pub const FAULT_ENV: &str = "SLIMBENCH_TEST_FAULT";

fn inject_fault(key: &Cell) -> anyhow::Result<()> {
    let Ok(spec) = std::env::var(FAULT_ENV) else {
        return Ok(());
    };
    let slug = cell_slug(key);
    for item in spec.split(',') {
        let Some((kind, text)) = item.split_once(':') else {
            continue;
        };
        if text.is_empty() || !slug.contains(text) {
            continue;
        }
        eprintln!("{FAULT_ENV}: injecting {kind} into {slug}");
        match kind {
            "panic" => panic!("injected panic ({FAULT_ENV})"),
            "abort" => std::process::abort(),
            "kill" => {
                // SAFETY: sending a signal to our own pid has no memory-safety preconditions.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            }
            "hang" => loop {
                std::thread::sleep(Duration::from_secs(1));
            },
            "error" => anyhow::bail!("injected error ({FAULT_ENV})"),
            other => anyhow::bail!("{FAULT_ENV}: unknown fault kind {other:?}"),
        }
    }
    Ok(())
}

/// Everything a worker needs to measure one cell; passed as JSON on its command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRequest {
    /// The run.
    pub run_id: String,
    /// The cell.
    pub key: Cell,
    /// The run's folder (traces go to `traces/` inside it).
    pub run_dir: PathBuf,
    /// The run's resolved settings (timing, cache, energy source, ...), as `run.json` stores
    /// them.
    pub spec: RunSpec,
    /// The host, detected once by the parent.
    pub host: HostInfo,
    /// Whether to evaluate quality: in the cell's first round only, since it does not depend on
    /// the machine.
    #[serde(default = "yes")]
    pub measure_quality: bool,
}

fn yes() -> bool {
    true
}

/// Measures the cell; never fails: errors become `failed` or `not-applicable` records.
pub fn run_cell(req: &WorkerRequest) -> Record {
    match measure(req) {
        Ok(record) => record,
        Err(e) => {
            let status = match e.downcast_ref::<ModelError>() {
                Some(ModelError::NotApplicable(_)) => Status::NotApplicable,
                _ => Status::Failed,
            };
            let mut r = Record::empty(&req.run_id, req.key.clone(), req.host.clone(), status);
            r.error = Some(format!("{e:#}"));
            r.peak_rss_bytes = peak_rss_bytes();
            r
        }
    }
}

fn measure(req: &WorkerRequest) -> anyhow::Result<Record> {
    inject_fault(&req.key)?;
    let spec = WorkloadSpec {
        cell: req.key.clone(),
        cache_dir: req.spec.cache_dir.clone(),
        model_inputs: req.spec.model_inputs.clone(),
    };
    // The sample storage is allocated before the model, so that the memory the model adds is
    // measured apart from the harness's (which stays the same at any iteration count).
    let mut prefill_latencies = LatencyRecorder::new();
    let mut main_latencies = LatencyRecorder::new();
    let rss_before_model = current_rss_bytes();
    // Building is metered like a cell; its costs (and the cached steps' recorded ones) go into
    // the record.
    let meter_settings = req.spec.meter_settings(&req.host);
    let build_meter =
        crate::meter::build::BuildMeter::install(&meter_settings, &req.host.cpu_model);
    let Built {
        mut workload,
        report,
    } = build_workload(&spec)?;
    drop(build_meter);
    // What building freed (a base model dropped once its variant is made) leaves the resident
    // size before it is read, and before the timed windows' peak starts from it.
    release_free_heap();
    let model_rss_bytes = rss_before_model
        .zip(current_rss_bytes())
        .map(|(before, after)| after.saturating_sub(before));
    let VariantReport {
        footprint,
        technique_params,
        layers,
        flops_per_item,
    } = report;
    let technique_params = with_kernel(technique_params, &req.key.device, &layers);
    let generative = workload.generation().is_some();
    for _ in 0..req.spec.timing.warmup_iters {
        match workload.generation() {
            Some(g) => {
                g.prefill().context("warm-up prefill")?;
                g.decode_step().context("warm-up decode step")?;
            }
            None => workload.run_batch().context("warm-up iteration")?,
        }
    }

    // A cell on cuda:N reads that GPU's energy and memory through NVML besides the CPU's.
    let mut settings = meter_settings;
    if let Some(n) = slimbench_models::device::cuda_ordinal(&req.key.device) {
        settings.gpus = Some(vec![n as u32]);
    }
    let opened = open_meter(&settings).context("opening the energy meter")?;
    for w in &opened.warnings {
        eprintln!("warning: {w}");
    }
    let meter = opened.meter;
    let domains = meter.domains().to_vec();
    // Power over intervals shorter than ten counter updates (or 50 ms) is resolution noise.
    let min_interval_s = (10.0 * meter.update_period_s()).max(0.05);
    let method = meter.method();
    let estimate = meter.estimate();
    // This round's share of the cell's window (see TimingSettings::round_min_window_s).
    let min_window_s = req.spec.timing.round_min_window_s(meter.update_period_s());
    let min_iters = req.spec.timing.round_min_iters();
    let sampler = Sampler::start(meter, req.spec.timing.sample_hz);
    let sampling_hz = sampler.hz();

    let idle_start = sampler.read_now()?;
    std::thread::sleep(Duration::from_secs_f64(req.spec.timing.round_idle_s()));
    let idle_end = sampler.read_now()?;

    // The peak from here on is the inference's: preparation, loading and warm-up left out.
    let peak_was_reset = reset_peak_rss();

    // A generative model's prompt is timed in a window of its own before the decode steps.
    let prefill = match workload.generation() {
        Some(g) => Some(timed_window(
            &sampler,
            min_iters,
            min_window_s,
            &mut prefill_latencies,
            || g.prefill(),
        )?),
        None => None,
    };
    let probe = crate::interference::Probe::start();
    let main = match workload.generation() {
        Some(g) => {
            // The decode steps continue from the prompt the last prefill left in the cache.
            timed_window(
                &sampler,
                min_iters,
                min_window_s,
                &mut main_latencies,
                || g.decode_step(),
            )?
        }
        None => timed_window(
            &sampler,
            min_iters,
            min_window_s,
            &mut main_latencies,
            || workload.run_batch(),
        )?,
    };
    let interference = probe.finish();
    let inference_peak_bytes = if peak_was_reset {
        rss_before_model
            .zip(peak_rss_bytes())
            .map(|(before, peak)| peak.saturating_sub(before))
    } else {
        None
    };
    // Quality after the timed windows: its pass does not count in the inference's peak.
    let quality = if req.measure_quality {
        Some(workload.quality().context("evaluating quality")?)
    } else {
        None
    };
    let (samples, meter, sampler_error) = sampler.stop();
    if let Some(e) = sampler_error {
        anyhow::bail!("energy sampling failed: {e}");
    }
    let energy_of = |window: &Window, items_per_iteration: usize| {
        energy_record(
            &domains,
            estimate.as_ref(),
            method.clone(),
            &samples,
            &Windows {
                idle: (&idle_start, &idle_end),
                timed: (&window.start, &window.end),
            },
            window.iterations,
            items_per_iteration,
            sampling_hz,
            (meter.dropped_samples(), meter.intervals()),
            min_interval_s,
        )
    };
    // Each decode step makes one token: the record's items are generated tokens.
    let items_per_iteration = if generative { 1 } else { req.key.batch_size };
    let mut energy = energy_of(&main, items_per_iteration);
    write_trace(req, &trace_csv(&domains, &samples, min_interval_s))?;

    let mut r = Record::empty(&req.run_id, req.key.clone(), req.host.clone(), Status::Ok);
    r.technique_params = technique_params;
    r.parameter_count = Some(footprint.parameter_count);
    r.nonzero_parameter_count = Some(footprint.nonzero_parameter_count);
    r.model_bytes = Some(footprint.model_bytes);
    r.quality = quality.map(|quality| QualityRecord {
        delta_points: quality.value_pct - quality.baseline_pct,
        metric: quality.metric,
        value_pct: quality.value_pct,
        baseline_pct: quality.baseline_pct,
        items: quality.items,
        fidelity: quality.fidelity,
        language: quality.language,
        paired: quality.paired,
    });
    let iterations = main.iterations;
    r.latency = main_latencies.stats();
    r.window_s = Some(main.wall_s);
    r.throughput_items_per_s = Some((iterations * items_per_iteration) as f64 / main.wall_s);
    r.peak_rss_bytes = peak_rss_bytes();
    r.model_rss_bytes = model_rss_bytes;
    r.interference = interference;
    r.inference_peak_bytes = inference_peak_bytes;
    if let Some(peaks) = meter.gpu_memory_peaks() {
        energy.gpu_process_peak_bytes = peaks.process_bytes;
        energy.gpu_device_peak_bytes = peaks.device_bytes;
    }
    if let (Some(prefill), Some(g)) = (&prefill, workload.generation()) {
        let prompt = g.prompt_tokens();
        let prefill_energy = energy_of(prefill, prompt);
        r.generation = Some(GenerationRecord {
            prompt_tokens: prompt,
            gen_tokens: g.gen_tokens(),
            prefill_tokens_per_s: (prefill.iterations * prompt) as f64 / prefill.wall_s,
            decode_tokens_per_s: iterations as f64 / main.wall_s,
            ttft_ms: prefill_latencies.stats(),
            prefill_j_per_token: prefill_energy.energy_per_item_j,
            decode_j_per_token: energy.energy_per_item_j,
            energy_source: energy.source.clone(),
            energy_measured: energy.measured,
            kv_cache_bytes: g.kv_cache_bytes(),
            prefill_energy,
            co2e_per_1000_generated_tokens_g: None,
            ttft_samples_ms: thin_samples(prefill_latencies.kept(), MAX_KEPT_SAMPLES),
        });
    }
    r.energy = Some(energy);
    r.layers = layers;
    r.threads = Some(slimbench_models::kernels::thread_count());
    let integer = r.layers.iter().any(|l| l.runs_integer_kernels());
    let weight_bytes = r.layers.iter().map(|l| l.bytes as f64).sum::<f64>();
    r.compute = compute_record(
        req,
        flops_per_item,
        r.latency.as_ref(),
        integer,
        weight_bytes,
    )?;
    r.latency_samples_ms = thin_samples(main_latencies.kept(), MAX_KEPT_SAMPLES);
    r.build = slimbench_models::build_cost::take_costs();
    Ok(r)
}

/// `params` with `kernel` naming the instruction set of slimbench's integer kernels where a CPU
/// cell's Linears run on them (`int8`, the block formats) and the family has not named it, so
/// every such figure says which path produced it.
fn with_kernel(
    mut params: serde_json::Value,
    device: &str,
    layers: &[slimbench_models::layer::LayerReport],
) -> serde_json::Value {
    let integer = layers.iter().any(|l| l.runs_integer_kernels());
    if device == "cpu" && integer {
        if let Some(obj) = params.as_object_mut() {
            obj.entry("kernel")
                .or_insert_with(|| slimbench_models::kernels::Isa::get().name().into());
        }
    }
    params
}

/// One timed window: the meter's readings at its edges, each iteration's latency, its length.
struct Window {
    start: Sample,
    end: Sample,
    iterations: usize,
    wall_s: f64,
}

/// Runs `iteration` until both `min_iters` iterations and `min_window_s` seconds are done.
fn timed_window(
    sampler: &Sampler,
    min_iters: usize,
    min_window_s: f64,
    latencies: &mut LatencyRecorder,
    mut iteration: impl FnMut() -> slimbench_models::Result<()>,
) -> anyhow::Result<Window> {
    let start = sampler.read_now()?;
    let started = Instant::now();
    loop {
        let t = Instant::now();
        iteration()?;
        latencies.record(t.elapsed().as_secs_f64() * 1e3);
        if latencies.count() >= min_iters && started.elapsed().as_secs_f64() >= min_window_s {
            break;
        }
    }
    let end = sampler.read_now()?;
    Ok(Window {
        start,
        end,
        iterations: latencies.count(),
        wall_s: started.elapsed().as_secs_f64(),
    })
}

/// FLOPs and the share of the calibrated peaks; the peaks only for CPU cells on a calibrated CPU:
/// the integer one (of the instruction path in use) for variants whose Linears run on the integer
/// kernels (their products are the bulk of the work), and the memory bandwidth against the
/// Linears' weights read once per forward pass.
fn compute_record(
    req: &WorkerRequest,
    flops_per_item: Option<f64>,
    latency: Option<&LatencyStats>,
    integer: bool,
    weight_bytes: f64,
) -> anyhow::Result<Option<ComputeRecord>> {
    let (Some(flops), Some(latency)) = (flops_per_item, latency) else {
        return Ok(None);
    };
    let calibration = if req.key.on_cpu() {
        Calibration::for_cpu(&req.spec.cache_dir, &req.host.cpu_model)?
    } else {
        None
    };
    let int8_path_now = slimbench_models::kernels::Isa::get().int8_path();
    let peak = calibration.as_ref().and_then(|c| {
        if integer {
            // A peak measured through other instructions than the ones running now is no peak.
            c.peak_int8_gops
                .zip(c.int8_path.as_deref())
                .filter(|(_, path)| Some(*path) == int8_path_now)
        } else {
            Some((c.peak_gflops, "f32-fma"))
        }
    });
    let mut record = ComputeRecord::new(flops, req.key.batch_size, latency.p50_ms, peak);
    record.set_weight_traffic(
        weight_bytes,
        latency.p50_ms,
        calibration.map(|c| c.read_bandwidth_gbs),
    );
    Ok(Some(record))
}

fn write_trace(req: &WorkerRequest, csv: &str) -> anyhow::Result<()> {
    let run_dir = RunDir::new(&req.run_dir);
    let dir = run_dir.traces_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = run_dir.trace_path(&req.key);
    crate::atomic::write(&path, csv.as_bytes())
}
