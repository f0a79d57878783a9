//! The result record of one cell (with a schema version), and the `results.jsonl` file that holds
//! a run's records, appended and flushed one at a time.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use slimbench_models::layer::LayerReport;

use crate::carbon::CarbonRecord;
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

/// The identity of a cell in a plan: model x technique x device x batch size.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellKey {
    /// Model name.
    pub model: String,
    /// Technique name.
    pub technique: String,
    /// Device name.
    pub device: String,
    /// Items per batch.
    pub batch_size: usize,
    /// Tokens per text, for text models (a plan dimension); absent for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<usize>,
}

impl CellKey {
    /// The batch shape for tables: `32`, or `8x128` (texts x tokens) for text models.
    pub fn batch_label(&self) -> String {
        match self.seq_len {
            Some(s) => format!("{}x{s}", self.batch_size),
            None => self.batch_size.to_string(),
        }
    }

    /// The model with its sequence length, for chart groups: `minilm (128 tokens)`.
    pub fn model_label(&self) -> String {
        match self.seq_len {
            Some(s) => format!("{} ({s} tokens)", self.model),
            None => self.model.clone(),
        }
    }

    /// True when `other` has the same model, device, batch size and sequence length (the cells a
    /// variant is compared across).
    pub fn same_setting(&self, other: &CellKey) -> bool {
        self.model == other.model
            && self.device == other.device
            && self.batch_size == other.batch_size
            && self.seq_len == other.seq_len
    }
}

impl std::fmt::Display for CellKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/b{}",
            self.model, self.technique, self.device, self.batch_size
        )?;
        if let Some(s) = self.seq_len {
            write!(f, "/s{s}")?;
        }
        Ok(())
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
    /// Which peak: `f32-fma`, or `int8-vnni` for variants whose Linears are int8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_kind: Option<String>,
    /// `achieved_gflops / peak_gflops`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_fraction: Option<f64>,
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
        }
    }
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
    pub key: CellKey,
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
    /// Raw latencies in ms (evenly thinned to at most [`MAX_KEPT_SAMPLES`]) for resampling.
    pub latency_samples_ms: Vec<f64>,
}

/// The most latency samples a record keeps: the ones its bootstrap intervals were computed from.
pub const MAX_KEPT_SAMPLES: usize = crate::stats::MAX_RESAMPLED;

impl Record {
    /// A record with identity and host filled and every measurement empty.
    pub fn empty(run_id: &str, key: CellKey, host: HostInfo, status: Status) -> Self {
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
            energy: None,
            carbon: None,
            threads: None,
            compute: None,
            layers: Vec::new(),
            latency_samples_ms: Vec::new(),
        }
    }

    /// A `failed` record carrying `error`.
    pub fn failed(run_id: &str, key: CellKey, host: HostInfo, error: impl Into<String>) -> Self {
        let mut r = Self::empty(run_id, key, host, Status::Failed);
        r.error = Some(error.into());
        r
    }
}

/// The current time, RFC 3339 UTC with seconds.
pub fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Appends `record` as one JSON line to `path` and flushes it to disk before returning.
pub fn append_record(path: &Path, record: &Record) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {} for appending", path.display()))?;
    let mut line = serde_json::to_string(record)?;
    line.push('\n');
    file.write_all(line.as_bytes())
        .and_then(|_| file.sync_data())
        .with_context(|| format!("cannot write to {}", path.display()))?;
    Ok(())
}

/// `records` in the order of `plan`'s cells (records of cells outside the plan last).
pub fn order_by_plan(mut records: Vec<Record>, plan: &crate::plan::Plan) -> Vec<Record> {
    let position = |k: &CellKey| plan.cells.iter().position(|c| c == k).unwrap_or(usize::MAX);
    records.sort_by_key(|r| position(&r.key));
    records
}

/// Reads every record of a `results.jsonl`; a bad line is an error naming the file and line.
/// A last line cut short by a kill is skipped with a warning, since the cell it held is rerun.
pub fn read_records(path: &Path) -> anyhow::Result<Vec<Record>> {
    use anyhow::Context;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut records = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(line) {
            Ok(r) => records.push(r),
            Err(e) if i + 1 == lines.len() && e.is_eof() => {
                eprintln!(
                    "warning: {}: line {} is incomplete (a run killed mid-write?); ignoring it",
                    path.display(),
                    i + 1
                );
            }
            Err(e) => anyhow::bail!(
                "{}: line {}: not a result record: {e}",
                path.display(),
                i + 1
            ),
        }
    }
    Ok(records)
}
