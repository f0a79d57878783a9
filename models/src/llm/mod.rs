//! The language-model family: llama-architecture models read from GGUF files (SmolLM2-135M and
//! user files), their tokenizer, inference with a key/value cache, compression, and the quality
//! and generation measures.

pub mod candle_path;
pub mod engine;
pub mod fetch;
pub mod gguf;
pub mod infer;
pub mod model;
pub mod prune;
pub mod quality;
pub mod tiny;
pub mod tokenize;
pub mod workload;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::cache::sha256_hex;
use crate::error::{ModelError, Result};
use crate::family::{
    Base, DimensionDefaults, Family, MethodText, PlanDims, StepRef, Variant, WeightTensors,
};
use crate::kernels::blocks::BlockFormat;
use crate::layer::{DenseLayer, LayerReport};
use crate::linears::Linears;
use crate::technique::{PostStep, TrainingStep};
use crate::workload::{Built, WorkloadSpec};
use model::{EmbeddingStorage, Llama};
use tokenize::LlmTokenizer;

/// The language models of the catalogue, with a one-line description.
pub const MODELS: &[(&str, &str)] = &[(
    fetch::SMOLLM2,
    "SmolLM2-135M-Instruct language model (llama, 30 blocks, width 576; reference: f32 of the shipped Q4_1 GGUF); `slimbench fetch smollm2` first",
)];

/// The language-model family (see [`Family`]).
pub struct Lm;

/// What a language-model variant keeps of its base besides the weights.
pub struct LlmSource {
    /// The tokenizer from the file's metadata.
    pub tokenizer: LlmTokenizer,
    /// The begin-of-sequence token the model adds, if any.
    pub bos: Option<u32>,
}

/// Loads the f32 reference of a GGUF file, with its tokenizer and cache key.
pub fn load_gguf(path: &Path) -> Result<(Llama, LlmSource, String)> {
    // One read of the file serves both the cache key and the tensors.
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let key = serde_json::json!({ "gguf_sha256": sha256_hex(&bytes), "format": 1 }).to_string();
    let gguf = gguf::read_bytes(&bytes, path)?;
    drop(bytes);
    let model = Llama::from_gguf(&gguf, path)?;
    let origin = path.display().to_string();
    let tokenizer = LlmTokenizer::from_vocab(&gguf.vocab, &origin)?;
    let bos = gguf.vocab.bos.filter(|_| gguf.vocab.add_bos);
    Ok((model, LlmSource { tokenizer, bos }, key))
}

impl Family for Lm {
    type Model = Llama;
    type Source = LlmSource;

    fn plan_dims(&self) -> PlanDims {
        PlanDims {
            default_batch_sizes: &[1],
            dimensions: &[
                DimensionDefaults {
                    dimension: &crate::dimension::SEQ_LEN,
                    defaults: &[workload::DEFAULT_PROMPT_LEN],
                },
                DimensionDefaults {
                    dimension: &crate::dimension::GEN_TOKENS,
                    defaults: &[workload::DEFAULT_GEN_TOKENS],
                },
            ],
        }
    }

    fn method(&self) -> MethodText {
        MethodText {
            kind: "llama-architecture language model",
            timed_call: "one greedy generation from a fixed prompt of held-out text: the prompt in one pass (prefill), then one decode step per generated token; prefill and decode are also timed apart, each in its own window",
            quality: "as llama.cpp's llama-perplexity defines it, on held-out chunks of text (the second half of each chunk scored): perplexity, KL divergence of the next-token distribution from the reference's, and top-1 agreement with the reference",
        }
    }

    fn cache_stem(&self, model: &str) -> String {
        workload::cache_stem(model)
    }

    fn load_base(&self, model: &str, _cache_dir: &Path) -> Result<Base<Llama, LlmSource>> {
        let path = workload::model_file(model)?;
        let (model, source, key) = load_gguf(&path)?;
        Ok(Base {
            model,
            source,
            key,
            outcome: None,
        })
    }

    fn step_params(
        &self,
        _model: &str,
        step: StepRef<'_>,
        _current: &Llama,
    ) -> Result<serde_json::Value> {
        Ok(match step {
            StepRef::Training(TrainingStep::PruneStructured { .. }) => serde_json::json!({
                "removes": "key/value groups (a key/value head with its query heads) and feed-forward neurons, the same ratio in every block (rounded, at least one of each kept)",
                "importance": "weight norm of everything that reads or writes the group or neuron",
                "finetune": "none",
            }),
            StepRef::Training(TrainingStep::DropLayers { .. }) => {
                let (path, text) = workload::calibration_text()?;
                serde_json::json!({
                    "removes": "whole transformer blocks",
                    "importance": "block influence: 1 - mean cosine between a block's input and output hidden states",
                    "calibration": format!("the first {} tokens of {}", workload::CALIBRATION_TOKENS, path.display()),
                    "calibration_sha256": sha256_hex(text.as_bytes()),
                    "finetune": "none",
                })
            }
            StepRef::Training(_) => serde_json::json!({}),
            StepRef::Post(PostStep::Quantize { embeddings, .. }) => serde_json::json!({
                "scope": if *embeddings {
                    "every Linear (fused query/key/value, attention output, fused gate/up, down, output head; the head keeps q8_0 under formats of fewer bits, as llama-quantize does) and the token embeddings tied to the head in its format, one table (dequantized to f32 at load for the lookup); norms f32"
                } else {
                    "every Linear (fused query/key/value, attention output, fused gate/up, down, output head; the head keeps q8_0 under formats of fewer bits, as llama-quantize does); the token-embedding lookup table and norms f32"
                },
                "activations": "quantized to 8 bits per block inside each product, as GGML does",
            }),
            StepRef::Post(PostStep::Cast { .. }) => serde_json::json!({
                "scope": "every Linear; token embeddings and norms f32",
            }),
            // The other post steps (int8, one-shot pruning) add nothing of this family's.
            StepRef::Post(_) => serde_json::json!({}),
        })
    }

    fn train(
        &self,
        _model: &str,
        step: &TrainingStep,
        current: &Llama,
        base: &Base<Llama, LlmSource>,
    ) -> Result<Llama> {
        match step {
            TrainingStep::PruneStructured { ratio, norm } => {
                prune::prune_structured(current, *ratio, *norm)
            }
            TrainingStep::DropLayers { count } => {
                let (path, text) = workload::calibration_text()?;
                let mut tokens = base.source.tokenizer.encode(&text)?;
                if tokens.len() < 2 {
                    return Err(ModelError::Invalid(format!(
                        "{}: too little calibration text",
                        path.display()
                    )));
                }
                tokens.truncate(workload::CALIBRATION_TOKENS);
                Ok(prune::drop_layers(current, *count, &tokens)?.0)
            }
            TrainingStep::PruneUnstructured { .. } => Err(ModelError::NotApplicable(
                "unstructured pruning of a language model needs a fine-tune that slimbench does not \
                 run, and no kernel here skips scattered zeros; use prune-structured-R (feed-forward neurons)"
                    .into(),
            )),
            TrainingStep::Distill { .. } => Err(ModelError::NotApplicable(
                "distilling a language model needs a training run far beyond a benchmark's budget \
                 (the family has no trainer); compare the shipped formats and pruning instead"
                    .into(),
            )),
        }
    }

    fn workload(
        &self,
        spec: &WorkloadSpec,
        device: &Device,
        variant: Variant<Llama, LlmSource>,
    ) -> Result<Built> {
        workload::build(spec, device, variant)
    }
}

impl WeightTensors for Llama {
    fn to_tensors(&self) -> Result<HashMap<String, Tensor>> {
        Llama::to_tensors(self)
    }

    fn with_tensors(&self, tensors: &HashMap<String, Tensor>, origin: &str) -> Result<Self> {
        Llama::from_tensors(&self.config, tensors, origin)
    }
}

impl Linears for Llama {
    fn linear_in_dims(&self) -> Vec<usize> {
        self.linears().iter().map(|l| l.in_dim).collect()
    }

    fn map_linears(&self, f: &mut dyn FnMut(&DenseLayer) -> Result<DenseLayer>) -> Result<Self> {
        let mut out = self.clone();
        for block in &mut out.blocks {
            block.qkv = f(&block.qkv)?;
            block.attn_out = f(&block.attn_out)?;
            block.gate_up = f(&block.gate_up)?;
            block.down = f(&block.down)?;
        }
        out.output = f(&self.output)?;
        Ok(out)
    }

    /// The embeddings and norms first, then every Linear.
    fn layer_reports(
        &self,
        note: &dyn Fn(&DenseLayer) -> Option<String>,
    ) -> Result<Vec<LayerReport>> {
        let mut reports = vec![self.embeddings_report()];
        for l in self.linears() {
            reports.push(l.report(note(l)));
        }
        Ok(reports)
    }

    /// The output head keeps q8_0 under the formats with fewer bits, as `llama-quantize` keeps a
    /// head in 6 bits or more (its q6_k fits no width of 576, so q8_0 here).
    fn least_format(&self, layer: &DenseLayer) -> Option<BlockFormat> {
        (layer.name == self.output.name).then_some(BlockFormat::Q8_0)
    }

    /// The token embeddings in the output head's format where the file ties them (one table,
    /// as llama.cpp stores it: `q4_1-all` is the shipped file's layout), else in `format`.
    fn quantize_embeddings(&self, format: BlockFormat) -> Result<Option<(Self, LayerReport)>> {
        let width = self.config.width;
        let head = BlockFormat::from_name(self.output.format()).filter(|_| self.tied);
        let format = head.unwrap_or(format);
        let chosen = format.choose_for_width(width).ok_or_else(|| {
            ModelError::NotApplicable(format!(
                "width {width} fits no block of {}'s fallback chain",
                format.name()
            ))
        })?;
        let q = candle_core::quantized::QTensor::quantize(&self.embeddings, chosen.ggml())?;
        let bytes = q.storage_size_in_bytes();
        let out = Llama {
            embeddings: q.dequantize(&Device::Cpu)?,
            embedding_storage: EmbeddingStorage {
                format: chosen.name().into(),
                bytes,
            },
            ..self.clone()
        };
        let mut report = out.embeddings_report();
        if chosen != format {
            report.note = Some(format!(
                "{}; width {width} is not a multiple of {}'s block, fell back to {}",
                report.note.unwrap_or_default(),
                format.name(),
                chosen.name()
            ));
        }
        Ok(Some((out, report)))
    }
}
