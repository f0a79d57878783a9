//! The post-training steps, written once for every model that has fully connected layers: block
//! quantization (GGML's formats on slimbench's own kernels on the CPU), `int8` and half-precision
//! casts. A model says which layers are its Linears through the [`Linears`] trait; the rest is here.
//!
//! A block format needs the layer's input width to be a multiple of its block (32 elements for
//! q8_0, q4_0, q4_1, q5_0, q5_1; 256 for the k-quants). A layer that does not fit falls back along
//! [`BlockFormat::fallback_chain`]: to the nearest block-32 format with at least as many bits per
//! weight, and last to f32, never to fewer bits than asked. Each layer's report says what it got
//! and why; a model none of whose layers fits is `NotApplicable`.

use std::collections::HashMap;

use crate::error::{ModelError, Result};
use crate::kernels::blocks::BlockFormat;
use crate::layer::{DenseLayer, LayerReport};
use crate::technique::{HalfType, PostStep};

/// A model whose fully connected layers the post-training steps replace.
pub trait Linears: Sized {
    /// The widths of the inputs of every Linear, in order (for messages).
    fn linear_in_dims(&self) -> Vec<usize>;

    /// The same model with every Linear replaced by `f(linear)`, in order; everything else (convolutions,
    /// embeddings, norms) is kept as it is.
    fn map_linears(&self, f: &mut dyn FnMut(&DenseLayer) -> Result<DenseLayer>) -> Result<Self>;

    /// One report per stored part of the model, in the record's order, with `note(linear)` on
    /// each Linear.
    fn layer_reports(
        &self,
        note: &dyn Fn(&DenseLayer) -> Option<String>,
    ) -> Result<Vec<LayerReport>>;

    /// The block format a Linear keeps at least, whatever format is asked for (a language model's
    /// output head keeps 8 bits, as llama.cpp's `llama-quantize` keeps it); `None` for none.
    fn least_format(&self, layer: &DenseLayer) -> Option<BlockFormat> {
        let _ = layer;
        None
    }

    /// The model with its token embedding table stored in `format` and the report entry that
    /// replaces the one of the same name; `Ok(None)` for models without token embeddings.
    fn quantize_embeddings(&self, format: BlockFormat) -> Result<Option<(Self, LayerReport)>> {
        let _ = format;
        Ok(None)
    }
}

/// A model after a post-training step and what each of its parts became.
#[derive(Debug, Clone)]
pub struct Mapped<M> {
    /// The model.
    pub model: M,
    /// One entry per stored part, with the chosen format and the reason for any fallback.
    pub layers: Vec<LayerReport>,
}

impl<M> Mapped<M> {
    /// The model and its reports.
    pub fn into_parts(self) -> (M, Vec<LayerReport>) {
        (self.model, self.layers)
    }
}

/// Stores every Linear's weight as int8 for slimbench's own kernel.
pub fn int8<M: Linears>(model: &M) -> Result<Mapped<M>> {
    map_every_linear(model, DenseLayer::int8)
}

/// Casts every Linear's weight to f16 or bf16. slimbench's own CPU inference (text and language
/// models) multiplies them on its kernels, widened to f32 as they are read or packed (bf16 on
/// `vdpbf16ps` where the CPU has AVX512_BF16); candle's forward pass (the digits models) widens
/// the whole weight to f32 each product.
pub fn cast<M: Linears>(model: &M, dtype: HalfType) -> Result<Mapped<M>> {
    map_every_linear(model, |l| l.cast(dtype.dtype()))
}

/// Applies `step` to `model`; `what` (`"q8_0-all: digits-mlp"`) prefixes the messages that
/// concern the whole cell.
pub fn apply_post_step<M: Linears>(model: &M, step: &PostStep, what: &str) -> Result<Mapped<M>> {
    match step {
        PostStep::Quantize {
            format,
            embeddings: false,
        } => quantize(model, *format),
        PostStep::Quantize {
            format,
            embeddings: true,
        } => {
            let mut mapped = quantize(model, *format)?;
            let (model, report) = mapped.model.quantize_embeddings(*format)?.ok_or_else(|| {
                ModelError::NotApplicable(format!(
                    "{what} has no token embeddings; use the plain format"
                ))
            })?;
            mapped.model = model;
            for entry in mapped.layers.iter_mut().filter(|l| l.name == report.name) {
                *entry = report.clone();
            }
            Ok(mapped)
        }
        PostStep::Int8 => int8(model),
        PostStep::Cast { dtype } => cast(model, *dtype),
        PostStep::PruneOneShot { sparsity } => {
            map_every_linear(model, |l| crate::pruning::magnitude_pruned(l, *sparsity))
        }
    }
}

/// Quantizes every Linear of `model` to `format`, falling back per layer where the block does not
/// fit; `NotApplicable` when no layer can be quantized at all.
pub fn quantize<M: Linears>(model: &M, format: BlockFormat) -> Result<Mapped<M>> {
    let asked = format.name();
    let mut notes: HashMap<String, String> = HashMap::new();
    let mut any_quantized = false;
    let quantized = model.map_linears(&mut |layer| match format.choose_for_width(layer.in_dim) {
        Some(fitting) => {
            let floor = model
                .least_format(layer)
                .filter(|f| f.bits_per_weight() > fitting.bits_per_weight());
            let chosen = floor.unwrap_or(fitting);
            if let Some(floor) = floor {
                notes.insert(
                    layer.name.clone(),
                    format!(
                        "kept in {} (the model keeps this layer at {:.1} bits per weight or more)",
                        floor.name(),
                        floor.bits_per_weight()
                    ),
                );
            } else if chosen != format {
                notes.insert(
                    layer.name.clone(),
                    format!(
                        "input width {} is not a multiple of {asked}'s block of {}; fell back to {}",
                        layer.in_dim,
                        format.block_len(),
                        chosen.name()
                    ),
                );
            }
            any_quantized = true;
            layer.quantized(chosen.ggml())
        }
        None => {
            notes.insert(
                layer.name.clone(),
                format!(
                    "input width {} fits no block of {asked}'s fallback chain; kept f32",
                    layer.in_dim
                ),
            );
            Ok(layer.clone())
        }
    })?;
    if !any_quantized {
        return Err(ModelError::NotApplicable(format!(
            "no layer's input width fits {asked} (block {}): widths {:?}",
            format.block_len(),
            model.linear_in_dims()
        )));
    }
    let layers = quantized.layer_reports(&|l| notes.get(&l.name).cloned())?;
    Ok(Mapped {
        model: quantized,
        layers,
    })
}

/// `model` with every Linear replaced by `f(linear)`, and the reports.
fn map_every_linear<M: Linears>(
    model: &M,
    f: impl Fn(&DenseLayer) -> Result<DenseLayer>,
) -> Result<Mapped<M>> {
    let model = model.map_linears(&mut |l| f(l))?;
    let layers = model.layer_reports(&|_| None)?;
    Ok(Mapped { model, layers })
}
