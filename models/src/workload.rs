//! The small interface through which the harness reaches a model variant (run one batch, report
//! quality and footprint). A [`Cell`] names it; [`crate::catalog::build_workload`] builds it
//! through its model's family.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::layer::LayerReport;
use crate::quality::LanguageQuality;
use crate::technique::Technique;

/// The identity of a cell in a plan: model x technique x device x batch size (x sequence length).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cell {
    /// Model name from the catalogue.
    pub model: String,
    /// Technique (or chain), serialised as its name.
    pub technique: Technique,
    /// Device name (`cpu`, `cuda:N`).
    pub device: String,
    /// Items per batch.
    pub batch_size: usize,
    /// Tokens per input, for families whose inputs have a length (a plan dimension; the prompt's
    /// length for language models); absent for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<usize>,
    /// Tokens generated after the prompt, for language models (a plan dimension); absent for the
    /// others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gen_tokens: Option<usize>,
}

impl Cell {
    /// The batch shape for tables: `32`, or `8x128` (texts x tokens) where inputs have a length.
    pub fn batch_label(&self) -> String {
        match (self.seq_len, self.gen_tokens) {
            (Some(s), Some(g)) => format!("{}x{s}+{g}", self.batch_size),
            (Some(s), None) => format!("{}x{s}", self.batch_size),
            _ => self.batch_size.to_string(),
        }
    }

    /// The model with its sequence length, for chart groups: `minilm (128 tokens)`.
    pub fn model_label(&self) -> String {
        match (self.seq_len, self.gen_tokens) {
            (Some(s), Some(g)) => format!("{} ({s} prompt + {g} generated tokens)", self.model),
            (Some(s), None) => format!("{} ({s} tokens)", self.model),
            _ => self.model.clone(),
        }
    }

    /// True when `other` has the same model, device, batch size and sequence length (the cells a
    /// variant is compared across).
    pub fn same_setting(&self, other: &Cell) -> bool {
        self.model == other.model
            && self.device == other.device
            && self.batch_size == other.batch_size
            && self.seq_len == other.seq_len
            && self.gen_tokens == other.gen_tokens
    }

    /// True for a cell on the host CPU.
    pub fn on_cpu(&self) -> bool {
        self.device == crate::device::CPU
    }
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/b{}",
            self.model, self.technique, self.device, self.batch_size
        )?;
        if let Some(s) = self.seq_len {
            write!(f, "/s{s}")?;
        }
        if let Some(g) = self.gen_tokens {
            write!(f, "/g{g}")?;
        }
        Ok(())
    }
}

/// What to build: one cell, and where the prepared-weights cache is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// The cell.
    #[serde(flatten)]
    pub cell: Cell,
    /// The prepared-weights cache folder.
    pub cache_dir: PathBuf,
}

/// Quality of a variant and of its uncompressed baseline on the same held-out data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Metric name, for example `accuracy`.
    pub metric: String,
    /// The variant's value, in percent.
    pub value_pct: f64,
    /// The uncompressed model's value on the same data, in percent.
    pub baseline_pct: f64,
    /// Number of held-out items evaluated.
    pub items: usize,
    /// Mean cosine similarity of the variant's embeddings to the uncompressed model's (0..1), for
    /// models that produce embeddings.
    pub fidelity: Option<f64>,
    /// Perplexity, KL divergence and top-1 agreement, for language models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<LanguageQuality>,
    /// For classification: the variant and the uncompressed model item by item, for a paired test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired: Option<crate::quality::PairedOutcomes>,
}

/// Parameter counts and storage size of a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footprint {
    /// All parameters.
    pub parameter_count: usize,
    /// Parameters that are not zero.
    pub nonzero_parameter_count: usize,
    /// Bytes of the weights as stored (quantized blocks and sparse layers at their real size).
    pub model_bytes: usize,
}

/// What a built variant is, stated once by its family when the workload is built: the record's
/// footprint, technique parameters, layers and FLOP count.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantReport {
    /// Parameter counts and size.
    pub footprint: Footprint,
    /// The technique's parameters, as recorded.
    pub technique_params: serde_json::Value,
    /// What each layer became.
    pub layers: Vec<LayerReport>,
    /// FLOPs of one item (a multiply-add counts two), where the model counts them.
    pub flops_per_item: Option<f64>,
}

/// A cell's variant, built: what the harness times, and what the variant is.
pub struct Built {
    /// The timed calls and the quality evaluation.
    pub workload: Box<dyn Workload>,
    /// Footprint, parameters, layers, FLOPs.
    pub report: VariantReport,
}

/// What the harness runs of a prepared variant: the timed call, the generative phases, and the
/// quality evaluation (a method, not a value: a family may evaluate lazily, and the worker calls
/// it after the timed windows so that its pass never counts in the inference's peak memory).
pub trait Workload {
    /// Items in one batch.
    fn batch_size(&self) -> usize;
    /// Runs one batch to completion (synchronising the device where it is asynchronous).
    fn run_batch(&mut self) -> Result<()>;
    /// Quality of this variant and of the baseline on the held-out split.
    fn quality(&self) -> Result<Quality>;
    /// The prefill and decode phases, timed apart, for generative models; `None` for the others.
    fn generation(&mut self) -> Option<&mut dyn Generation> {
        None
    }
}

/// A generative model's two phases: the prompt in one pass (prefill), then one token at a time
/// (decode), each step reading every weight once.
pub trait Generation {
    /// Tokens in the prompt.
    fn prompt_tokens(&self) -> usize;
    /// Tokens generated after the prompt before the sequence starts over.
    fn gen_tokens(&self) -> usize;
    /// Empties the key/value cache and runs the prompt, up to the first generated token.
    fn prefill(&mut self) -> Result<()>;
    /// Generates one more token (greedy); after [`Generation::gen_tokens`] steps the cache is cut
    /// back to the prompt and generation starts over, so every step attends to between the
    /// prompt's length and the prompt plus the generated tokens.
    fn decode_step(&mut self) -> Result<()>;
    /// Bytes of the key/value cache at its full length.
    fn kv_cache_bytes(&self) -> usize;
}
