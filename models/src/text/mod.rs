//! The text family: BERT-family sentence encoders (all-MiniLM-L6-v2 and user checkpoints in the
//! same layout), their files, tokenizer, compression, quality tasks and fetching.

pub mod bert;
pub mod compress;
pub mod config;
pub mod emails;
pub mod fetch;
pub mod files;
pub mod infer;
pub mod onnx;
pub mod probe;
pub mod tiny;
pub mod tokenize;
pub mod workload;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::family::{
    Base, DimensionDefaults, Family, MethodText, PlanDims, StepRef, Variant, WeightTensors,
};
use crate::kernels::blocks::BlockFormat;
use crate::layer::{DenseLayer, LayerReport};
use crate::linears::Linears;
use crate::technique::{PostStep, TrainingStep};
use crate::workload::{Built, WorkloadSpec};
use bert::Bert;
use compress::{distill_bert, prune_bert_structured, quantize_embeddings, DistillConfig};
use files::ModelFiles;
use tokenize::TextTokenizer;
use workload::{cache_stem, email_split, load_base};

/// The text models of the catalogue, with a one-line description.
pub const MODELS: &[(&str, &str)] = &[(
    workload::MINILM,
    "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, hidden 384, 22.7M parameters); `slimbench fetch minilm` first",
)];

/// The text family (see [`Family`]).
pub struct Text;

/// What a text variant keeps of its base besides the weights: the files it came from.
pub struct TextSource {
    /// The checkpoint's files.
    pub files: ModelFiles,
}

impl Family for Text {
    type Model = Bert;
    type Source = TextSource;

    fn plan_dims(&self) -> PlanDims {
        PlanDims {
            default_batch_sizes: &[1, 8],
            dimensions: &[DimensionDefaults {
                dimension: &crate::dimension::SEQ_LEN,
                defaults: &[workload::DEFAULT_SEQ_LEN],
            }],
        }
    }

    fn method(&self) -> MethodText {
        MethodText {
            kind: "BERT sentence encoder",
            timed_call: "one forward pass over a fixed batch of held-out emails at the cell's sequence length, mean-pooled to sentence embeddings",
            quality: "spam accuracy of a logistic-regression probe, trained once on the fp32 model's embeddings, applied to the variant's embeddings of held-out emails; fidelity is the mean cosine of the variant's embeddings to the fp32 model's on the same emails",
        }
    }

    fn cache_stem(&self, model: &str) -> String {
        cache_stem(model)
    }

    fn load_base(&self, model: &str, _cache_dir: &Path) -> Result<Base<Bert, TextSource>> {
        let base = load_base(model)?;
        Ok(Base {
            model: base.bert,
            source: TextSource { files: base.files },
            key: base.key,
            outcome: None,
        })
    }

    fn step_params(
        &self,
        _model: &str,
        step: StepRef<'_>,
        current: &Bert,
    ) -> Result<serde_json::Value> {
        Ok(match step {
            StepRef::Training(TrainingStep::PruneStructured { .. }) => serde_json::json!({
                "removes": "attention heads and feed-forward neurons, the same ratio in every layer (at least one kept)",
                "importance": "weight norm of everything that reads or writes the head or neuron",
                "finetune": "none",
            }),
            StepRef::Training(TrainingStep::Distill { .. }) => {
                serde_json::json!({ "student": DistillConfig::default_for(current.layers.len()) })
            }
            StepRef::Training(
                TrainingStep::PruneUnstructured { .. } | TrainingStep::DropLayers { .. },
            ) => serde_json::json!({}),
            StepRef::Post(PostStep::Quantize { embeddings, .. }) => serde_json::json!({
                "scope": if *embeddings {
                    "every Linear and the token embeddings (dequantized to f32 at load for the lookup); position and type embeddings and layer norms f32"
                } else {
                    "every Linear (fused query/key/value, attention output, intermediate, output); embeddings and layer norms f32"
                },
            }),
            StepRef::Post(PostStep::Cast { .. }) => serde_json::json!({
                "scope": "every Linear; embeddings and layer norms f32",
            }),
            // The other post steps (int8, one-shot pruning) add nothing of this family's.
            StepRef::Post(_) => serde_json::json!({}),
        })
    }

    fn train(
        &self,
        model: &str,
        step: &TrainingStep,
        current: &Bert,
        base: &Base<Bert, TextSource>,
    ) -> Result<Bert> {
        match step {
            TrainingStep::PruneStructured { ratio, norm } => {
                prune_bert_structured(current, *ratio, *norm)
            }
            TrainingStep::Distill { control: false } => {
                let split = email_split()?;
                let texts: Vec<&str> = split.distill.iter().map(|e| e.text.as_str()).collect();
                let mut tokenizer = TextTokenizer::load(&base.source.files.tokenizer)?;
                let dc = DistillConfig::default_for(current.layers.len());
                distill_bert(current, &mut tokenizer, &texts, &dc, model)
            }
            TrainingStep::Distill { control: true } => Err(ModelError::NotApplicable(
                "distill-control trains the student on labels alone; a sentence encoder has no \
                 labelled task to train it on (use distill)"
                    .into(),
            )),
            TrainingStep::DropLayers { .. } => Err(ModelError::NotApplicable(
                "prune-layers-N is for language models (whose residual stream survives a dropped block); \
                 a 6-layer sentence encoder loses too much: use prune-structured-R or distill"
                    .into(),
            )),
            TrainingStep::PruneUnstructured { .. } => Err(ModelError::NotApplicable(
                "unstructured pruning of a text model needs a masked fine-tune that slimbench's \
                 text trainer does not run; use prune-structured-R (attention heads and FFN neurons)"
                    .into(),
            )),
        }
    }

    fn workload(
        &self,
        spec: &WorkloadSpec,
        device: &Device,
        variant: Variant<Bert, TextSource>,
    ) -> Result<Built> {
        workload::build(spec, device, variant)
    }

    fn ort_workload(
        &self,
        spec: &WorkloadSpec,
        variant: Variant<Bert, TextSource>,
    ) -> Result<Built> {
        onnx::build(spec, variant)
    }
}

impl WeightTensors for Bert {
    fn to_tensors(&self) -> Result<HashMap<String, Tensor>> {
        Bert::to_tensors(self)
    }

    fn with_tensors(&self, tensors: &HashMap<String, Tensor>, origin: &str) -> Result<Self> {
        Bert::from_tensors(&self.config, tensors, origin)
    }
}

impl Linears for Bert {
    fn linear_in_dims(&self) -> Vec<usize> {
        self.layers
            .iter()
            .flat_map(|l| l.linears())
            .map(|l| l.in_dim)
            .collect()
    }

    fn map_linears(&self, f: &mut dyn FnMut(&DenseLayer) -> Result<DenseLayer>) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|l| l.map_linears(&mut *f))
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert {
            layers,
            ..self.clone()
        })
    }

    /// The embeddings and layer norms (f32) first, then every Linear.
    fn layer_reports(
        &self,
        note: &dyn Fn(&DenseLayer) -> Option<String>,
    ) -> Result<Vec<LayerReport>> {
        let mut reports = vec![self.embeddings_report()];
        for l in self.layers.iter().flat_map(|l| l.linears()) {
            reports.push(l.report(note(l)));
        }
        Ok(reports)
    }

    fn quantize_embeddings(&self, format: BlockFormat) -> Result<Option<(Self, LayerReport)>> {
        quantize_embeddings(self, format).map(Some)
    }
}
