//! The result record of one cell (with a schema version), and the `results.jsonl` file that holds
//! a run's records, appended and flushed one at a time.

pub mod validity;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use slimbench_models::layer::LayerReport;

use slimbench_models::workload::Cell;

use crate::carbon::CarbonRecord;
use crate::error::UsageError;
use crate::host::HostInfo;
use crate::meter::EnergyRecord;
use crate::stats::LatencyStats;

/// Version of the record layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// How a cell ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Measured.
    Ok,
    /// The worker failed (error, panic, signal, timeout); `error` says why.
    Failed,
    /// The technique does not apply to this model or device; `error` says why.
    NotApplicable,
}

impl Status {
    /// The name used in files and on the console.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::NotApplicable => "not-applicable",
        }
    }
}

/// Quality of the variant and its change against the uncompressed model on the same data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityRecord {
    /// Metric name (`accuracy`).
    pub metric: String,
    /// The variant's value in percent.
    pub value_pct: f64,
    /// The uncompressed model's value in percent.
    pub baseline_pct: f64,
    /// `value_pct - baseline_pct`, in percentage points.
    pub delta_points: f64,
    /// Number of held-out items.
    pub items: usize,
    /// Mean cosine similarity of the variant's embeddings to the uncompressed model's (0..1), for
    /// embedding models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fidelity: Option<f64>,
    /// Perplexity, KL divergence and top-1 agreement against the reference, for language models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<slimbench_models::quality::LanguageQuality>,
    /// For classification: the variant and the uncompressed model item by item (McNemar's table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired: Option<slimbench_models::quality::PairedOutcomes>,
}

/// A language model's two phases, each timed in its own window with its own energy: the prompt
/// (prefill) and the generated tokens (decode). The record's own latency, throughput and energy
/// are the decode phase's (one item = one generated token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRecord {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated after it before the sequence starts over.
    pub gen_tokens: usize,
    /// Prompt tokens per second over the prefill window.
    pub prefill_tokens_per_s: f64,
    /// Generated tokens per second over the decode window.
    pub decode_tokens_per_s: f64,
    /// Time to first token: the prompt's pass, per repetition.
    pub ttft_ms: Option<LatencyStats>,
    /// Energy per prompt token over the prefill window, J.
    pub prefill_j_per_token: f64,
    /// Energy per generated token over the decode window, J.
    pub decode_j_per_token: f64,
    /// Where both energy figures come from (`rapl`, `nvml`, `estimated-tdp`, ...).
    pub energy_source: String,
    /// True only when both were measured, not estimated.
    pub energy_measured: bool,
    /// Bytes of the key/value cache at the prompt plus the generated tokens (f32).
    pub kv_cache_bytes: usize,
    /// The prefill window's energy record (per item = per prompt token).
    pub prefill_energy: EnergyRecord,
    /// CO2e of 1,000 generated tokens (decode energy, the run's grid intensity and PUE), g.
    #[serde(default)]
    pub co2e_per_1000_generated_tokens_g: Option<f64>,
    /// Raw prefill latencies in ms (thinned like `latency_samples_ms`).
    #[serde(default)]
    pub ttft_samples_ms: Vec<f64>,
}

/// The arithmetic of one forward pass and how close to the machine's peak the cell ran it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeRecord {
    /// FLOPs of one item's forward pass, counted from the layer shapes (a multiply-add is two;
    /// pruned layers count at their pruned size; sparse zeros count).
    pub flops_per_item: f64,
    /// GFLOP/s reached at the median latency: `flops_per_item * batch / p50`.
    pub achieved_gflops: f64,
    /// The machine's peak from `slimbench calibrate` for the arithmetic the variant's Linears use
    /// (see `peak_kind`), GFLOP/s or int8 GOP/s, where this CPU was calibrated (CPU cells only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_gflops: Option<f64>,
    /// Which peak: `f32-fma`, or `int8-vnni`/`int8-avx-vnni`/`int8-avx2` for variants whose
    /// Linears run on the integer kernels (`int8` and the GGML block formats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_kind: Option<String>,
    /// `achieved_gflops / peak_gflops`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_fraction: Option<f64>,
    /// GB/s (10^9 bytes) of the Linears' weights as stored, read once per forward pass of the
    /// batch at the median latency: the memory side of the roofline, the one that bounds
    /// one-row products (batch 1 of a single vector, a language model's decode step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_read_gbs: Option<f64>,
    /// `weight_read_gbs` over the calibrated memory read bandwidth (CPU cells on a calibrated
    /// CPU). Over 1 means the weights stayed in the caches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_fraction: Option<f64>,
}

impl ComputeRecord {
    /// The record of `flops_per_item` run at batch `batch` in `p50_ms`, against a peak and its
    /// kind.
    pub fn new(flops_per_item: f64, batch: usize, p50_ms: f64, peak: Option<(f64, &str)>) -> Self {
        let achieved_gflops = flops_per_item * batch as f64 / (p50_ms / 1e3) / 1e9;
        Self {
            flops_per_item,
            achieved_gflops,
            peak_gflops: peak.map(|(p, _)| p),
            peak_kind: peak.map(|(_, k)| k.to_string()),
            peak_fraction: peak.map(|(p, _)| achieved_gflops / p),
            weight_read_gbs: None,
            bandwidth_fraction: None,
        }
    }

    /// Sets the weights' read rate: `weight_bytes` per forward pass of `p50_ms`, against the
    /// calibrated `bandwidth_gbs` where there is one.
    pub fn set_weight_traffic(
        &mut self,
        weight_bytes: f64,
        p50_ms: f64,
        bandwidth_gbs: Option<f64>,
    ) {
        if weight_bytes > 0.0 && p50_ms > 0.0 {
            let gbs = weight_bytes / (p50_ms / 1e3) / 1e9;
            self.weight_read_gbs = Some(gbs);
            self.bandwidth_fraction = bandwidth_gbs.filter(|b| *b > 0.0).map(|b| gbs / b);
        }
    }
}

/// One round of a cell, as its worker measured it (see [`crate::rounds`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundFigures {
    /// The round, from 1.
    pub round: usize,
    /// The cell's place in that round's order, from 1.
    pub position: usize,
    /// When the round's worker finished, RFC 3339 UTC.
    pub timestamp_utc: String,
    /// Timed iterations.
    pub iterations: usize,
    /// Mean latency per batch, ms.
    pub mean_ms: f64,
    /// Median latency per batch, ms.
    pub p50_ms: f64,
    /// Length of the timed window, s.
    pub window_s: f64,
    /// Energy per item over the round's window, J.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_per_item_j: Option<f64>,
    /// The model's peak during the round's inference, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_peak_bytes: Option<u64>,
    /// How many of the record's `latency_samples_ms` are this round's (they follow the earlier
    /// rounds' in order).
    pub samples: usize,
    /// What else the machine did during the round's window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interference: Option<crate::interference::Interference>,
    /// How many times the round was measured again because it was disturbed.
    #[serde(default)]
    pub retries: usize,
}

/// One cell's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// The run this record belongs to.
    pub run_id: String,
    /// When the cell finished, RFC 3339 UTC.
    pub timestamp_utc: String,
    /// The machine.
    pub host: HostInfo,
    /// Which cell.
    #[serde(flatten)]
    pub key: Cell,
    /// The technique's parameters.
    pub technique_params: serde_json::Value,
    /// How the cell ended.
    pub status: Status,
    /// Why it failed or does not apply.
    pub error: Option<String>,
    /// All parameters of the variant.
    pub parameter_count: Option<usize>,
    /// Parameters that are not zero.
    pub nonzero_parameter_count: Option<usize>,
    /// Bytes of the weights as stored.
    pub model_bytes: Option<usize>,
    /// Quality on the held-out split.
    pub quality: Option<QualityRecord>,
    /// Latency per batch.
    pub latency: Option<LatencyStats>,
    /// Length of the timed window, in seconds.
    pub window_s: Option<f64>,
    /// Items per second over the timed window.
    pub throughput_items_per_s: Option<f64>,
    /// Peak resident memory of the worker process.
    pub peak_rss_bytes: Option<u64>,
    /// The model's own resident memory: the worker's resident size once the variant is loaded,
    /// minus before (the harness, its preallocated sample storage included, is in both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_rss_bytes: Option<u64>,
    /// The model's peak during inference: the worker's peak resident size over the timed windows
    /// (the peak reset as they start) minus its size before the model was loaded. Unlike
    /// `peak_rss_bytes` it leaves out the harness, the preparation and the quality pass, and does
    /// not grow with the iteration count. The memory chart and the gate use it where present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_peak_bytes: Option<u64>,
    /// Energy and power, each figure with its source.
    pub energy: Option<EnergyRecord>,
    /// CO2e of the energy, with the intensity, its source and year, and the PUE.
    #[serde(default)]
    pub carbon: Option<CarbonRecord>,
    /// Threads the model ran on (what its kernels read from `RAYON_NUM_THREADS` or the cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// FLOPs per item and the fraction of the machine's peak reached, where the model counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<ComputeRecord>,
    /// What each layer became.
    pub layers: Vec<LayerReport>,
    /// Prefill and decode apart, for language models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<GenerationRecord>,
    /// Raw latencies in ms (evenly thinned to at most [`MAX_KEPT_SAMPLES`]) for resampling;
    /// with rounds, each round's in turn (see [`RoundFigures::samples`]).
    pub latency_samples_ms: Vec<f64>,
    /// What else the machine did during the timed window (one worker's record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interference: Option<crate::interference::Interference>,
    /// The cell's rounds, in round order; empty for a record of one worker (runs stored before
    /// rounds existed, and each round's own record in `rounds.jsonl`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<RoundFigures>,
    /// What building the variant cost, step by step (a cached step with the cost recorded when
    /// it was built).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build: Vec<slimbench_models::build_cost::BuildCost>,
}

/// The most latency samples a record keeps: the ones its bootstrap intervals were computed from.
pub const MAX_KEPT_SAMPLES: usize = crate::stats::MAX_RESAMPLED;

impl Record {
    /// The memory a variant takes to serve: the inference peak above the harness where recorded,
    /// else (records of older runs) the worker's whole peak.
    pub fn serving_memory_bytes(&self) -> Option<u64> {
        self.inference_peak_bytes.or(self.peak_rss_bytes)
    }

    /// Rounds whose kept measurement was still disturbed, and measurements redone because
    /// they were disturbed.
    pub fn disturbance(&self) -> (usize, usize) {
        let disturbed = self
            .rounds
            .iter()
            .filter(|r| r.interference.is_some_and(|i| i.disturbed))
            .count();
        (disturbed, self.rounds.iter().map(|r| r.retries).sum())
    }

    /// The disturbance as the console and the report show it: rounds still disturbed of all
    /// rounds, and the redone ones (`0/3`, `1/3 (+2)`); `None` for a record without rounds.
    pub fn disturbance_label(&self) -> Option<String> {
        if self.rounds.is_empty() {
            return None;
        }
        let (disturbed, retried) = self.disturbance();
        let redone = if retried > 0 {
            format!(" (+{retried})")
        } else {
            String::new()
        };
        Some(format!("{disturbed}/{}{redone}", self.rounds.len()))
    }

    /// The latency samples grouped by round (one group for a record without rounds, none when a
    /// round's count does not fit the samples).
    pub fn round_samples(&self) -> Vec<&[f64]> {
        if self.rounds.is_empty() {
            return vec![self.latency_samples_ms.as_slice()];
        }
        let mut groups = Vec::with_capacity(self.rounds.len());
        let mut start = 0;
        for r in &self.rounds {
            let end = start + r.samples;
            let Some(group) = self.latency_samples_ms.get(start..end) else {
                return Vec::new();
            };
            groups.push(group);
            start = end;
        }
        groups
    }

    /// The round figure `f` of the rounds `self` and `other` both measured, paired by round
    /// number (for ratios paired by round).
    pub fn paired_rounds(
        &self,
        other: &Record,
        f: impl Fn(&RoundFigures) -> Option<f64>,
    ) -> Vec<(f64, f64)> {
        self.rounds
            .iter()
            .filter_map(|a| {
                let b = other.rounds.iter().find(|b| b.round == a.round)?;
                Some((f(a)?, f(b)?))
            })
            .collect()
    }

    /// A record with identity and host filled and every measurement empty.
    pub fn empty(run_id: &str, key: Cell, host: HostInfo, status: Status) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            run_id: run_id.to_string(),
            timestamp_utc: now_utc(),
            host,
            key,
            technique_params: serde_json::json!({}),
            status,
            error: None,
            parameter_count: None,
            nonzero_parameter_count: None,
            model_bytes: None,
            quality: None,
            latency: None,
            window_s: None,
            throughput_items_per_s: None,
            peak_rss_bytes: None,
            model_rss_bytes: None,
            inference_peak_bytes: None,
            energy: None,
            carbon: None,
            threads: None,
            compute: None,
            layers: Vec::new(),
            generation: None,
            latency_samples_ms: Vec::new(),
            interference: None,
            rounds: Vec::new(),
            build: Vec::new(),
        }
    }

    /// A `failed` record carrying `error`.
    pub fn failed(run_id: &str, key: Cell, host: HostInfo, error: impl Into<String>) -> Self {
        let mut r = Self::empty(run_id, key, host, Status::Failed);
        r.error = Some(error.into());
        r
    }
}

/// The current time, RFC 3339 UTC with seconds.
pub fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Appends `record` as one JSON line to `path` and flushes it to disk before returning (see
/// [`append_json_line`]).
pub fn append_record(path: &Path, record: &Record) -> anyhow::Result<()> {
    append_json_line(path, record)
}

/// Appends `value` as one JSON line to `path` and flushes it to disk before returning. A torn
/// last line (a crash or a full disk mid-write) is first moved aside by [`set_aside_torn_tail`],
/// so a line is never appended onto it. `results.jsonl` and `rounds.jsonl` are written so.
pub fn append_json_line<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Some(aside) = set_aside_torn_tail(path)? {
        eprintln!(
            "warning: {}: its last line was incomplete (a crash or a full disk mid-write); moved it to {} before appending",
            path.display(),
            aside.display()
        );
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {} for appending", path.display()))?;
    let mut line = serde_json::to_string(value)?;
    line.push('\n');
    file.write_all(line.as_bytes())
        .and_then(|_| file.sync_data())
        .with_context(|| format!("cannot write to {}", path.display()))?;
    Ok(())
}

/// The file a torn tail of `path` is appended to: `<name>.torn` beside it.
pub fn torn_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".torn");
    path.with_file_name(name)
}

/// When `path` does not end with a newline, moves the bytes after its last newline (a line cut
/// short by a crash or a full disk) to [`torn_path`], one line there each, and cuts them from
/// `path`; returns where they went. Nothing is dropped: the torn bytes are kept for a person to
/// read, and the cell they belonged to is rerun by `--resume`.
pub fn set_aside_torn_tail(path: &Path) -> anyhow::Result<Option<std::path::PathBuf>> {
    use anyhow::Context;
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(None);
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let whole_record = std::str::from_utf8(&bytes[keep..])
        .ok()
        // A JSON line (a record, a round) cut anywhere no longer parses.
        .is_some_and(|l| serde_json::from_str::<serde_json::Value>(l).is_ok());
    if whole_record {
        // Only the newline is missing: complete the line rather than move a record aside.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {} for appending", path.display()))?;
        file.write_all(b"\n")
            .and_then(|_| file.sync_data())
            .with_context(|| format!("cannot write to {}", path.display()))?;
        return Ok(None);
    }
    let aside = torn_path(path);
    let mut torn = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&aside)
        .with_context(|| format!("cannot open {} to keep a torn line", aside.display()))?;
    torn.write_all(&bytes[keep..])
        .and_then(|_| torn.write_all(b"\n"))
        .and_then(|_| torn.sync_data())
        .with_context(|| format!("cannot write {}", aside.display()))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {} to cut its torn line", path.display()))?;
    file.set_len(keep as u64)
        .and_then(|_| file.sync_data())
        .with_context(|| format!("cannot cut the torn line of {}", path.display()))?;
    Ok(Some(aside))
}

/// How many lines of a `results.jsonl` each cell has (a failed record and its retries each
/// count): the attempt a new round of the cell belongs to. Lines that do not parse count for
/// nothing (the reader reports them).
pub fn records_per_cell(path: &Path) -> anyhow::Result<HashMap<Cell, usize>> {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display())))
        }
    };
    let mut counts = HashMap::new();
    for line in text.lines() {
        if let Ok(r) = serde_json::from_str::<Record>(line) {
            *counts.entry(r.key).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// `records` in the order of `plan`'s cells (records of cells outside the plan last).
pub fn order_by_plan(mut records: Vec<Record>, plan: &crate::plan::Plan) -> Vec<Record> {
    let position = |k: &Cell| plan.cells.iter().position(|c| c == k).unwrap_or(usize::MAX);
    records.sort_by_key(|r| position(&r.key));
    records
}

/// The JSON lines of a file (`results.jsonl`, `rounds.jsonl`) with their 1-based line numbers,
/// parsed as `T`: blank lines are skipped; a last line without its newline that does not parse
/// (a crash or a full disk mid-write) is skipped with a warning, since its cell or round runs
/// again on `--resume`; any other line that is not UTF-8 or not a `what` is an error naming the
/// file and line (exit 2).
pub fn read_json_lines<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
) -> Result<Vec<(usize, T)>, UsageError> {
    let bytes = std::fs::read(path)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
    let torn_tail = !bytes.is_empty() && !bytes.ends_with(b"\n");
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let count = lines.len();
    let mut out = Vec::new();
    for (i, raw) in lines.into_iter().enumerate() {
        let line_no = i + 1;
        let parsed = std::str::from_utf8(raw)
            .map_err(|_| "not UTF-8 text".to_string())
            .and_then(|line| {
                if line.trim().is_empty() {
                    Ok(None)
                } else {
                    serde_json::from_str::<T>(line)
                        .map(Some)
                        .map_err(|e| e.to_string())
                }
            });
        match parsed {
            Ok(Some(value)) => out.push((line_no, value)),
            Ok(None) => {}
            Err(_) if torn_tail && line_no == count => eprintln!(
                "warning: {}: line {line_no} is incomplete (a crash or a full disk mid-write); ignoring it, it is measured again by --resume",
                path.display()
            ),
            Err(e) => {
                return Err(UsageError(format!(
                    "{}: line {line_no}: not a {what}: {e} (move the line aside, or restore the file)",
                    path.display()
                )))
            }
        }
    }
    Ok(out)
}

/// Reads every record of a `results.jsonl`, by the rules every command shares (`report`, `run
/// --resume`, `merge`, `compare`): a line that is not UTF-8, not a record, or of another schema
/// version is an error naming the file and line (a usage error: exit 2); a cell recorded twice is
/// an error too, unless the earlier record is `failed` (a retry supersedes it; both lines stay in
/// the file). A last line with no newline that is not a whole record was cut short by a crash: it
/// is skipped with a warning (the cell it held is rerun by `--resume`, and the next append moves
/// it aside, see [`set_aside_torn_tail`]).
///
/// Every record's values pass [`validity::check_record`], and with `plan` (the cells the
/// folder's `run.json` asks for) every record's cell is one of them; anything else is an error
/// naming the file, the line and the field or cell.
pub fn read_records(path: &Path, plan: Option<&[Cell]>) -> Result<Vec<Record>, UsageError> {
    let mut records: Vec<Record> = Vec::new();
    let mut first_line: HashMap<Cell, (usize, usize)> = HashMap::new();
    for (line_no, record) in read_json_lines::<Record>(path, "result record")? {
        if record.schema_version != SCHEMA_VERSION {
            return Err(UsageError(format!(
                "{}: line {line_no}: schema version {}, but this slimbench reads version {SCHEMA_VERSION}; read it with the slimbench that wrote it",
                path.display(),
                record.schema_version
            )));
        }
        if let Err(e) = validity::check_record(&record) {
            return Err(UsageError(format!(
                "{}: line {line_no}: cell {}: {e}; the record is impossible, so nothing is rendered from it (correct the line, or remove it and measure the cell again with `slimbench run --resume`)",
                path.display(),
                record.key
            )));
        }
        if let Some(cells) = plan {
            if !cells.contains(&record.key) {
                return Err(UsageError(format!(
                    "{}: line {line_no}: cell {} is not in this folder's plan (run.json); it belongs to another plan or share: move the line aside, or restore the run.json it was measured under",
                    path.display(),
                    record.key
                )));
            }
        }
        match first_line.get(&record.key).copied() {
            Some((_, index)) if records[index].status == Status::Failed => {
                first_line.insert(record.key.clone(), (line_no, index));
                records[index] = record;
            }
            Some((earlier, _)) => {
                return Err(UsageError(format!(
                    "{}: line {line_no}: cell {} is already recorded at line {earlier}; a run folder holds each cell once (remove one of the two lines)",
                    path.display(),
                    record.key
                )))
            }
            None => {
                first_line.insert(record.key.clone(), (line_no, records.len()));
                records.push(record);
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn host() -> HostInfo {
        static HOST: OnceLock<HostInfo> = OnceLock::new();
        HOST.get_or_init(HostInfo::detect).clone()
    }

    fn record(batch_size: usize, status: Status) -> Record {
        let key = Cell::new("digits-mlp", "fp32".parse().unwrap(), "cpu", batch_size);
        Record::empty("run", key, host(), status)
    }

    fn lines_of(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect()
    }

    #[test]
    fn a_retry_supersedes_a_failed_record_and_a_second_ok_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        let failed = record(1, Status::Failed);
        let ok = record(1, Status::Ok);
        std::fs::write(&path, lines_of(&[failed, ok.clone()]).concat()).unwrap();
        let got = read_records(&path, None).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].status, Status::Ok);
        std::fs::write(&path, lines_of(&[ok.clone(), ok]).concat()).unwrap();
        let e = read_records(&path, None).unwrap_err().0;
        assert!(
            e.contains("line 2") && e.contains("already recorded at line 1"),
            "{e}"
        );
    }

    #[test]
    fn a_newer_schema_and_non_utf8_bytes_are_refused_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        let mut newer = record(2, Status::Ok);
        newer.schema_version = SCHEMA_VERSION + 1;
        std::fs::write(&path, lines_of(&[record(1, Status::Ok), newer]).concat()).unwrap();
        let e = read_records(&path, None).unwrap_err().0;
        assert!(e.contains("line 2: schema version"), "{e}");
        let mut bytes = lines_of(&[record(1, Status::Ok)]).concat().into_bytes();
        bytes.extend_from_slice(b"\xff\xfe garbage\n");
        bytes.extend_from_slice(lines_of(&[record(2, Status::Ok)]).concat().as_bytes());
        std::fs::write(&path, bytes).unwrap();
        let e = read_records(&path, None).unwrap_err().0;
        assert!(e.contains("line 2: not a result record: not UTF-8"), "{e}");
    }

    #[test]
    fn a_complete_last_record_missing_only_its_newline_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        let text = lines_of(&[record(1, Status::Ok), record(2, Status::Ok)]).concat();
        std::fs::write(&path, text.trim_end()).unwrap();
        assert_eq!(read_records(&path, None).unwrap().len(), 2);
        assert_eq!(set_aside_torn_tail(&path).unwrap(), None);
        append_record(&path, &record(3, Status::Ok)).unwrap();
        assert_eq!(read_records(&path, None).unwrap().len(), 3);
        assert!(!torn_path(&path).exists());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// A file cut at any byte reads without panic, keeps every complete record, and after an
        /// append holds those, the new one, and the cut bytes aside.
        #[test]
        fn truncation_anywhere_never_drops_a_complete_record(n in 1usize..6, cut_frac in 0.0f64..1.0) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("records.jsonl");
            let lines = lines_of(&(1..=n).map(|b| record(b, Status::Ok)).collect::<Vec<_>>());
            let text = lines.concat();
            let cut = ((text.len() as f64) * cut_frac) as usize;
            std::fs::write(&path, &text.as_bytes()[..cut]).unwrap();
            // Lines whose JSON (newline aside) lies wholly before the cut.
            let mut complete = 0;
            let mut end = 0;
            for l in &lines {
                if end + l.len() - 1 <= cut {
                    complete += 1;
                }
                end += l.len();
            }
            let got = read_records(&path, None).unwrap();
            proptest::prop_assert_eq!(got.len(), complete);
            append_record(&path, &record(99, Status::Ok)).unwrap();
            let got = read_records(&path, None).unwrap();
            proptest::prop_assert_eq!(got.len(), complete + 1);
            let torn = std::fs::read(torn_path(&path)).unwrap_or_default();
            let kept: usize = lines[..complete].iter().map(String::len).sum();
            if cut > kept {
                proptest::prop_assert_eq!(&torn[..torn.len() - 1], &text.as_bytes()[kept..cut]);
            }
        }

        /// Garbage or a duplicated line anywhere is an error naming a line, never a panic or a
        /// silently shorter list.
        #[test]
        fn garbage_or_duplicate_lines_are_errors_naming_the_line(
            n in 1usize..5,
            at in 0usize..5,
            garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..40),
            duplicate in proptest::prelude::any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("records.jsonl");
            let mut lines = lines_of(&(1..=n).map(|b| record(b, Status::Ok)).collect::<Vec<_>>())
                .into_iter()
                .map(String::into_bytes)
                .collect::<Vec<_>>();
            let at = at.min(n);
            let inserted = if duplicate {
                lines[at.min(n - 1)].clone()
            } else {
                let mut g: Vec<u8> = garbage.into_iter().filter(|&b| b != b'\n').collect();
                g.insert(0, b'#'); // never blank, never a record
                g.push(b'\n');
                g
            };
            lines.insert(at, inserted);
            std::fs::write(&path, lines.concat()).unwrap();
            let e = read_records(&path, None).unwrap_err().0;
            proptest::prop_assert!(e.contains("records.jsonl: line "), "{}", e);
        }
    }
}
