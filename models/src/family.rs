//! A model family (the digits networks, the BERT encoders, ...) and the one chain runner that
//! every family shares: it loads the base model, runs each training step of a technique (each
//! cached on disk under a key of all its inputs), applies the post-training step through
//! [`crate::linears`] and hands the variant to the family to build its workload.
//!
//! A family implements [`Family`] (typed: its model, its steps, its workload); the catalogue
//! reaches every family through [`ModelFamily`], which each [`Family`] gets for free.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::cache::{entry_path, load_or_build, CacheOutcome};
use crate::dimension::Dimension;
use crate::engine::Engine;
use crate::error::{ModelError, Result};
use crate::layer::LayerReport;
use crate::linears::{apply_post_step, Linears, Mapped};
use crate::technique::{PostStep, Technique, TrainingStep};
use crate::workload::{Built, Cell, WorkloadSpec};

/// The plan dimensions of a family: the batch sizes, and each other dimension it has, with what a
/// plan times when it names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanDims {
    /// Batch sizes when the plan names none.
    pub default_batch_sizes: &'static [usize],
    /// The family's dimensions beyond the batch size (none for fixed-size inputs), each with its
    /// values when the plan names none.
    pub dimensions: &'static [DimensionDefaults],
}

/// One dimension of a family and its default values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DimensionDefaults {
    /// The dimension, defined once in [`crate::dimension`] (or by the family, registered).
    pub dimension: &'static Dimension,
    /// The values a plan times when it names none.
    pub defaults: &'static [usize],
}

impl PlanDims {
    /// True when the family has `dimension`.
    pub fn has(&self, dimension: &Dimension) -> bool {
        self.defaults(dimension).is_some()
    }

    /// The family's default values of `dimension`; `None` when it does not have it.
    pub fn defaults(&self, dimension: &Dimension) -> Option<&'static [usize]> {
        self.dimensions
            .iter()
            .find(|d| d.dimension.key == dimension.key)
            .map(|d| d.defaults)
    }
}

/// How a family's cells are measured, in words true for that family: the report's method section
/// reads it for each family whose cells a run holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodText {
    /// What kind of model the family is (`image classifier`).
    pub kind: &'static str,
    /// What one timed call does (the unit of the latency figures).
    pub timed_call: &'static str,
    /// How quality is measured, and against what.
    pub quality: &'static str,
}

/// A family's uncompressed model, loaded, with what identifies it.
pub struct Base<M, S> {
    /// The uncompressed model.
    pub model: M,
    /// What the family keeps besides the weights (files, tokenizer, ...).
    pub source: S,
    /// Cache key material of the base: every input that made its weights.
    pub key: String,
    /// Whether the base came from the cache (`None`: read from the user's files).
    pub outcome: Option<CacheOutcome>,
}

/// A variant as the family's workload receives it: the base, the trained model, the model after
/// the post-training step, and what was recorded on the way.
pub struct Variant<M, S> {
    /// The uncompressed base.
    pub base: Base<M, S>,
    /// The model after the chain's training steps (f32).
    pub trained: M,
    /// The model after the post-training step, with its layer reports; `None` without one.
    pub post: Option<Mapped<M>>,
    /// Each step with its parameters, as recorded.
    pub params: Vec<serde_json::Value>,
    /// Cache key material of the variant (base, each step, the post-training step).
    pub key: String,
}

/// One step of a chain, of either kind, as [`Family::step_params`] sees it.
#[derive(Debug, Clone, Copy)]
pub enum StepRef<'a> {
    /// A training step.
    Training(&'a TrainingStep),
    /// The post-training step.
    Post(&'a PostStep),
}

/// What differs between model families. One implementation and one folder make a new family;
/// see ARCHITECTURE.md, "Adding a model family".
pub trait Family: Sync {
    /// The model in f32, as training steps leave it.
    type Model: Linears + WeightTensors + Clone;
    /// What the family keeps of a loaded base besides its weights.
    type Source;

    /// What a plan times when it names no batch size or sequence length.
    fn plan_dims(&self) -> PlanDims;

    /// How this family's cells are measured, for the report's method section.
    fn method(&self) -> MethodText;

    /// The stem of this model's cache entries (`digits-mlp`, `minilm`, `bert-<folder>`).
    fn cache_stem(&self, model: &str) -> String;

    /// Loads (or trains, cached) the uncompressed model.
    fn load_base(&self, model: &str, cache_dir: &Path) -> Result<Base<Self::Model, Self::Source>>;

    /// The family's own parameters of a step (its fine-tune, student, scope), merged into the
    /// step's recorded parameters and its cache key; the generic ones (block size, fallback,
    /// int8 scheme) are added by the runner.
    fn step_params(
        &self,
        model: &str,
        step: StepRef<'_>,
        current: &Self::Model,
    ) -> Result<serde_json::Value>;

    /// Runs one training step on `current`.
    fn train(
        &self,
        model: &str,
        step: &TrainingStep,
        current: &Self::Model,
        base: &Base<Self::Model, Self::Source>,
    ) -> Result<Self::Model>;

    /// Builds the timed workload of one cell from its variant, on `device` (the cell's, opened
    /// once by the catalogue).
    fn workload(
        &self,
        spec: &WorkloadSpec,
        device: &Device,
        variant: Variant<Self::Model, Self::Source>,
    ) -> Result<Built>;

    /// Builds the workload of one cell on ONNX Runtime (`--engines ort`): the variant written
    /// as an ONNX graph in the technique's ONNX format ([`crate::onnx::linear::OnnxFormat`]). A
    /// family without an export says so, and its cells are `not-applicable`.
    fn ort_workload(
        &self,
        spec: &WorkloadSpec,
        variant: Variant<Self::Model, Self::Source>,
    ) -> Result<Built> {
        let _ = variant;
        Err(ModelError::NotApplicable(format!(
            "{}: the ort engine has no ONNX export of this model family yet",
            spec.cell.model
        )))
    }
}

/// A model's f32 weights by name, for the cache: written out after a training step and read back
/// in the configuration of the family's base.
pub trait WeightTensors: Sized {
    /// The weights by name.
    fn to_tensors(&self) -> Result<HashMap<String, Tensor>>;
    /// A model of `self`'s configuration (the base's) with `tensors` as its weights; `origin`
    /// names the source in errors.
    fn with_tensors(&self, tensors: &HashMap<String, Tensor>, origin: &str) -> Result<Self>;
}

/// The door through which the catalogue reaches a family without knowing its types.
pub trait ModelFamily: Sync {
    /// What a plan times when it names no batch size or sequence length.
    fn plan_dims(&self) -> PlanDims;
    /// How this family's cells are measured (see [`Family::method`]).
    fn method(&self) -> MethodText;
    /// Prepares a cell's variant ahead of timing (training steps, cached); returns whether the
    /// base and each training step came from the cache.
    fn prepare(
        &self,
        model: &str,
        technique: &Technique,
        cache_dir: &Path,
    ) -> Result<Vec<CacheOutcome>>;
    /// Builds the workload of one cell on `device`, the cell's device opened.
    fn build(&self, spec: &WorkloadSpec, device: &Device) -> Result<Built>;
}

/// A variant after its training steps, before the post-training step.
pub struct Trained<M, S> {
    /// The uncompressed base.
    pub base: Base<M, S>,
    /// The model after the chain's training steps.
    pub model: M,
    /// Each training step with its parameters, as recorded.
    pub params: Vec<serde_json::Value>,
    /// Whether the base (where cached) and each training step came from the cache.
    pub outcomes: Vec<CacheOutcome>,
    /// Cache key material of the base and every training step.
    pub key: String,
}

/// The recorded parameters of a step: the step itself, what the runner knows of it, and the
/// family's own.
fn step_params<F: Family>(
    family: &F,
    model: &str,
    step: StepRef<'_>,
    current: &F::Model,
) -> Result<serde_json::Value> {
    let to_value = |r: serde_json::Result<serde_json::Value>| {
        r.map_err(|e| ModelError::Invalid(format!("step parameters: {e}")))
    };
    let (mut value, generic) = match step {
        StepRef::Training(s) => (to_value(serde_json::to_value(s))?, serde_json::json!({})),
        StepRef::Post(s) => (to_value(serde_json::to_value(s))?, post_step_params(s)),
    };
    let own = family.step_params(model, step, current)?;
    if let Some(obj) = value.as_object_mut() {
        for extra in [generic, own] {
            if let serde_json::Value::Object(more) = extra {
                obj.extend(more);
            }
        }
    }
    Ok(value)
}

/// What every family records of a post-training step.
fn post_step_params(step: &PostStep) -> serde_json::Value {
    match step {
        PostStep::Quantize { format, .. } => serde_json::json!({
            "block_size": format.block_len(),
            "fallback": "per layer to the nearest block-32 format with as many bits or more, else f32",
        }),
        PostStep::Int8 => serde_json::json!({
            "weights": "symmetric int8, one scale per output channel and group of inputs",
            "group": crate::layer::INT8_GROUP,
            "activations": "symmetric int8 per row and group, computed at run time",
            "kernel": crate::kernels::Isa::get().name(),
        }),
        PostStep::Cast { .. } => serde_json::json!({}),
        PostStep::PruneOneShot { .. } => serde_json::json!({
            "criterion": "weight magnitude, per layer (exactly round(S x weights) zeroed, ties by position)",
            "finetune": "none",
            "storage": "dense f32",
        }),
    }
}

/// Loads the base and runs each training step of `technique`, each cached under the key of the
/// base and every step so far: the one chain runner of every family.
pub fn train_chain<F: Family>(
    family: &F,
    model: &str,
    technique: &Technique,
    cache_dir: &Path,
) -> Result<Trained<F::Model, F::Source>> {
    let base = family.load_base(model, cache_dir)?;
    let mut key = base.key.clone();
    let mut current = base.model.clone();
    let mut params = Vec::new();
    let mut outcomes: Vec<CacheOutcome> = base.outcome.into_iter().collect();
    let stem = format!("{}-variant", family.cache_stem(model));
    for step in technique.training_steps() {
        let p = step_params(family, model, StepRef::Training(step), &current)?;
        key = format!("{key}|{p}");
        params.push(p);
        let path = entry_path(cache_dir, &stem, &key);
        let (tensors, outcome) = load_or_build(&path, || {
            family.train(model, step, &current, &base)?.to_tensors()
        })?;
        current = base
            .model
            .with_tensors(&tensors, &path.display().to_string())?;
        outcomes.push(outcome);
    }
    Ok(Trained {
        base,
        model: current,
        params,
        outcomes,
        key,
    })
}

impl<F: Family> ModelFamily for F {
    fn plan_dims(&self) -> PlanDims {
        Family::plan_dims(self)
    }

    fn method(&self) -> MethodText {
        Family::method(self)
    }

    fn prepare(
        &self,
        model: &str,
        technique: &Technique,
        cache_dir: &Path,
    ) -> Result<Vec<CacheOutcome>> {
        Ok(train_chain(self, model, technique, cache_dir)?.outcomes)
    }

    fn build(&self, spec: &WorkloadSpec, device: &Device) -> Result<Built> {
        let Cell {
            model, technique, ..
        } = &spec.cell;
        if technique.kv_cache_q8_0() && !Family::plan_dims(self).has(&crate::dimension::GEN_TOKENS)
        {
            return Err(ModelError::NotApplicable(format!(
                "{}: {model} keeps no key/value cache (language models only)",
                crate::technique::KV_Q8_0
            )));
        }
        let engine = spec.cell.engine;
        if engine == Engine::Ort {
            if !device.is_cpu() {
                return Err(ModelError::NotApplicable(format!(
                    "the ort engine runs ONNX Runtime's CPU execution provider; {} needs a \
                     build of ONNX Runtime with CUDA, which slimbench does not fetch",
                    spec.cell.device
                )));
            }
            // Before any training: a technique ONNX Runtime has no operator for, or a missing
            // library, is known at once.
            crate::onnx::linear::OnnxFormat::of(technique)?;
            crate::onnx::runtime::init()?;
        }
        let trained = train_chain(self, model, technique, &spec.cache_dir)?;
        let mut params = trained.params;
        let (post, key) = match technique.post() {
            Some(step) => {
                params.push(step_params(
                    self,
                    model,
                    StepRef::Post(step),
                    &trained.model,
                )?);
                let what = format!("{technique}: {model}");
                let metered = crate::build_cost::start();
                let mapped = apply_post_step(&trained.model, step, &what)?;
                crate::build_cost::note(metered.finish(&format!("post: {technique}"), ""));
                let step_json = serde_json::to_string(step)
                    .map_err(|e| ModelError::Invalid(format!("step parameters: {e}")))?;
                (Some(mapped), format!("{}|{step_json}", trained.key))
            }
            None => (None, trained.key),
        };
        let variant = Variant {
            base: trained.base,
            trained: trained.model,
            post,
            params,
            key,
        };
        match engine {
            Engine::Slimbench => self.workload(spec, device, variant),
            Engine::Ort => self.ort_workload(spec, variant),
        }
    }
}

impl<M: Linears + Clone, S> Variant<M, S> {
    /// The model to time and its layer reports: the post-training step's, or the trained model
    /// with `reports` of it.
    pub fn final_model(
        &self,
        reports: impl FnOnce(&M) -> Result<Vec<LayerReport>>,
    ) -> Result<(M, Vec<LayerReport>)> {
        match &self.post {
            Some(mapped) => Ok((mapped.model.clone(), mapped.layers.clone())),
            None => Ok((self.trained.clone(), reports(&self.trained)?)),
        }
    }

    /// The f32 model an exporter writes: the post step's when it leaves f32 weights (one-shot
    /// pruning zeroes some), else the trained one, which a format's writer (`f32_weights` false)
    /// quantizes itself.
    pub(crate) fn f32_model_to_export(&self, f32_weights: bool) -> &M {
        match &self.post {
            Some(mapped) if f32_weights => &mapped.model,
            _ => &self.trained,
        }
    }
}

#[cfg(test)]
mod tests {
    //! A family written for the test alone, one impl and nothing else, run through the same
    //! runner as the real ones: what a newcomer's family gets for free.
    use super::*;
    use crate::layer::DenseLayer;
    use crate::workload::{Footprint, Quality, VariantReport, Workload};
    use candle_core::Tensor;

    /// One fully connected layer, 64 -> 32.
    #[derive(Clone)]
    struct Toy(DenseLayer);

    impl Linears for Toy {
        fn linear_in_dims(&self) -> Vec<usize> {
            vec![self.0.in_dim]
        }
        fn map_linears(
            &self,
            f: &mut dyn FnMut(&DenseLayer) -> Result<DenseLayer>,
        ) -> Result<Self> {
            Ok(Toy(f(&self.0)?))
        }
        fn layer_reports(
            &self,
            note: &dyn Fn(&DenseLayer) -> Option<String>,
        ) -> Result<Vec<LayerReport>> {
            Ok(vec![self.0.report(note(&self.0))])
        }
    }

    struct ToyFamily;

    struct ToyWorkload;

    impl Workload for ToyWorkload {
        fn batch_size(&self) -> usize {
            1
        }
        fn run_batch(&mut self) -> Result<()> {
            Ok(())
        }
        fn quality(&self) -> Result<Quality> {
            Err(ModelError::Invalid("none".into()))
        }
    }

    impl WeightTensors for Toy {
        fn to_tensors(&self) -> Result<HashMap<String, Tensor>> {
            Ok(HashMap::from([
                ("w".to_string(), self.0.weight_f32()?),
                ("b".to_string(), self.0.bias.clone()),
            ]))
        }
        fn with_tensors(&self, tensors: &HashMap<String, Tensor>, origin: &str) -> Result<Toy> {
            let get = |n: &str| {
                tensors
                    .get(n)
                    .cloned()
                    .ok_or_else(|| ModelError::Invalid(format!("{origin}: no {n}")))
            };
            Ok(Toy(DenseLayer::from_f32("toy", &get("w")?, get("b")?)?))
        }
    }

    impl Family for ToyFamily {
        type Model = Toy;
        type Source = ();
        fn plan_dims(&self) -> PlanDims {
            PlanDims {
                default_batch_sizes: &[1],
                dimensions: &[],
            }
        }
        fn method(&self) -> MethodText {
            MethodText {
                kind: "toy",
                timed_call: "nothing",
                quality: "none",
            }
        }
        fn cache_stem(&self, model: &str) -> String {
            model.to_string()
        }
        fn load_base(&self, _model: &str, _cache_dir: &Path) -> Result<Base<Toy, ()>> {
            let w = Tensor::randn(0f32, 1.0, (32, 64), &Device::Cpu)?;
            let b = Tensor::zeros(32, candle_core::DType::F32, &Device::Cpu)?;
            Ok(Base {
                model: Toy(DenseLayer::from_f32("toy", &w, b)?),
                source: (),
                key: "toy base".into(),
                outcome: None,
            })
        }
        fn step_params(
            &self,
            _model: &str,
            step: StepRef<'_>,
            _current: &Toy,
        ) -> Result<serde_json::Value> {
            Ok(match step {
                StepRef::Training(_) => serde_json::json!({ "toy": true }),
                StepRef::Post(_) => serde_json::json!({}),
            })
        }
        fn train(
            &self,
            _model: &str,
            step: &TrainingStep,
            current: &Toy,
            _base: &Base<Toy, ()>,
        ) -> Result<Toy> {
            match step {
                TrainingStep::PruneStructured { ratio, .. } => {
                    let w = (current.0.weight_f32()? * (1.0 - ratio))?;
                    Ok(Toy(DenseLayer::from_f32(
                        "toy",
                        &w,
                        current.0.bias.clone(),
                    )?))
                }
                other => Err(ModelError::NotApplicable(format!("toy: {other:?}"))),
            }
        }
        fn workload(
            &self,
            _spec: &WorkloadSpec,
            _device: &Device,
            variant: Variant<Toy, ()>,
        ) -> Result<Built> {
            let (_, layers) = variant.final_model(|m| m.layer_reports(&|_| None))?;
            Ok(Built {
                workload: Box::new(ToyWorkload),
                report: VariantReport {
                    footprint: Footprint {
                        parameter_count: 0,
                        nonzero_parameter_count: 0,
                        model_bytes: 0,
                    },
                    technique_params: serde_json::json!(variant.params),
                    layers,
                    flops_per_item: None,
                },
            })
        }
    }

    fn spec(technique: &str, cache: &Path) -> WorkloadSpec {
        WorkloadSpec {
            cell: Cell::new("toy", technique.parse().unwrap(), "cpu", 1),
            cache_dir: cache.to_path_buf(),
            model_inputs: Default::default(),
        }
    }

    #[test]
    fn a_new_family_is_one_impl_and_gets_caching_steps_and_every_post_training_step() {
        let cache = tempfile::tempdir().unwrap();
        let technique: Technique = "prune-structured-50+q4k".parse().unwrap();
        let first = ToyFamily.prepare("toy", &technique, cache.path()).unwrap();
        assert_eq!(first, vec![CacheOutcome::Built]);
        let again = ToyFamily.prepare("toy", &technique, cache.path()).unwrap();
        assert_eq!(
            again,
            vec![CacheOutcome::Hit],
            "the training step is cached"
        );
        // 64 inputs: q4k's 256-block does not fit, the fallback chain gives q4_1, and says so.
        let w = ToyFamily
            .build(&spec("prune-structured-50+q4k", cache.path()), &Device::Cpu)
            .unwrap();
        let layer = &w.report.layers[0];
        assert_eq!(layer.format, "q4_1");
        assert!(layer.note.as_deref().unwrap().contains("fell back to q4_1"));
        let steps = &w.report.technique_params;
        assert_eq!(
            steps[0]["toy"], true,
            "the family's own parameters are recorded"
        );
        assert_eq!(steps[1]["block_size"], 256, "and the runner's");
        for (t, format) in [("int8", "int8"), ("bf16", "bf16"), ("fp32", "f32")] {
            let w = ToyFamily
                .build(&spec(t, cache.path()), &Device::Cpu)
                .unwrap();
            assert_eq!(w.report.layers[0].format, format, "{t}");
        }
        // A post step every family gets without a line of its own: one-shot magnitude pruning.
        let w = ToyFamily
            .build(&spec("prune-oneshot-50", cache.path()), &Device::Cpu)
            .unwrap();
        let layer = &w.report.layers[0];
        assert_eq!((layer.format.as_str(), layer.weight_sparsity), ("f32", 0.5));
        assert_eq!(w.report.technique_params[0]["finetune"], "none");
        let e = ToyFamily
            .build(&spec("q8_0-all", cache.path()), &Device::Cpu)
            .err()
            .unwrap();
        assert!(e.to_string().contains("has no token embeddings"), "{e}");
        let e = ToyFamily
            .build(&spec("distill", cache.path()), &Device::Cpu)
            .err()
            .unwrap();
        assert!(matches!(e, ModelError::NotApplicable(_)), "{e}");
    }
}
