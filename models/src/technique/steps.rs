//! The typed steps a technique chains: training steps (pruning, distillation), post-training
//! steps (a block format, `int8`, a half-precision cast) and the key/value cache step, as the
//! families apply them and the records serialise them.

use serde::{Serialize, Serializer};

use crate::kernels::blocks::BlockFormat;
use crate::pruning::{Norm, Scope};

/// A step that trains: its result is cached under a key of all its inputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum TrainingStep {
    /// Magnitude pruning to `sparsity` (0..1).
    PruneUnstructured {
        /// Fraction of weights set to zero.
        sparsity: f64,
        /// Per layer or global threshold.
        scope: Scope,
    },
    /// Removal of neurons, channels or heads.
    PruneStructured {
        /// Fraction removed.
        ratio: f64,
        /// Ranking norm.
        norm: Norm,
    },
    /// Removal of whole transformer blocks: the `count` whose removal changes the hidden state
    /// least on calibration text (`prune-layers-N`; language models).
    DropLayers {
        /// Blocks removed.
        count: usize,
    },
    /// Distillation into the model's default student (`control`: labels only).
    Distill {
        /// True for the labels-only control.
        control: bool,
    },
}

/// The half-precision type of a cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HalfType {
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl HalfType {
    /// The candle dtype.
    pub fn dtype(self) -> candle_core::DType {
        match self {
            HalfType::F16 => candle_core::DType::F16,
            HalfType::Bf16 => candle_core::DType::BF16,
        }
    }

    /// The step name (`f16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            HalfType::F16 => "f16",
            HalfType::Bf16 => "bf16",
        }
    }
}

/// A step applied to the trained weights when the workload is built (milliseconds, never cached);
/// it can only end a chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum PostStep {
    /// Block quantization of the fully connected weights.
    Quantize {
        /// The block format.
        #[serde(serialize_with = "serialize_format")]
        format: BlockFormat,
        /// Also the token embeddings (`<format>-all`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        embeddings: bool,
    },
    /// int8 weights (one scale per output channel and group of inputs) times activations
    /// quantized per row at run time, through slimbench's own kernel.
    Int8,
    /// Half-precision cast of the fully connected weights.
    Cast {
        /// `f16` or `bf16`.
        dtype: HalfType,
    },
    /// The smallest-magnitude weights of every Linear set to zero, per layer, after training and
    /// without fine-tuning (one-shot magnitude pruning); the weights stay dense f32.
    PruneOneShot {
        /// Fraction of each Linear's weights set to zero (0..1).
        sparsity: f64,
    },
}

fn serialize_format<S: Serializer>(
    format: &BlockFormat,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(format.name())
}

/// One step of a chain, of any kind: what the catalogue parses a step name into.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A step that trains.
    Training(TrainingStep),
    /// A step applied to the trained weights; it can only end a chain (before the cache step).
    Post(PostStep),
    /// A language model's key/value cache in GGML's `q8_0` blocks; always last.
    KvCacheQ8_0,
}
