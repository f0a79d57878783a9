//! The small interface through which the harness reaches a model variant (run one batch, report
//! quality and footprint). A [`Cell`] names it; [`crate::catalog::build_workload`] builds it
//! through its model's family.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::layer::LayerReport;
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
    /// Tokens per input, for families whose inputs have a length (a plan dimension); absent for
    /// the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<usize>,
}

impl Cell {
    /// The batch shape for tables: `32`, or `8x128` (texts x tokens) where inputs have a length.
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
    pub fn same_setting(&self, other: &Cell) -> bool {
        self.model == other.model
            && self.device == other.device
            && self.batch_size == other.batch_size
            && self.seq_len == other.seq_len
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

/// A prepared variant that the harness can time.
pub trait Workload {
    /// Items in one batch.
    fn batch_size(&self) -> usize;
    /// Runs one batch to completion (synchronising the device where it is asynchronous).
    fn run_batch(&mut self) -> Result<()>;
    /// Quality of this variant and of the baseline on the held-out split.
    fn quality(&self) -> Result<Quality>;
    /// Parameter counts and size.
    fn footprint(&self) -> Result<Footprint>;
    /// The technique's parameters, as recorded.
    fn technique_params(&self) -> serde_json::Value;
    /// What each layer became.
    fn layers(&self) -> Vec<LayerReport>;
    /// FLOPs of one item's forward pass (a multiply-add counts two), where the model counts them.
    fn flops_per_item(&self) -> Option<f64> {
        None
    }
}
