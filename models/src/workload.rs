//! The small interface through which the harness reaches a model variant (run one batch, report
//! quality and footprint), and the preparation of variants: each training step of a technique
//! chain (pruning with its fine-tune, distillation) is cached on disk under a key of all its inputs;
//! quantization and casts are applied when the workload is built.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::cache::{entry_path, load_or_build, sha256_hex, CacheOutcome};
use crate::catalog::{is_device, is_model, parse_technique, Step, MODELS};
use crate::compress::distill::{distill, train_control, DEFAULT_ALPHA, DEFAULT_TEMPERATURE};
use crate::compress::prune::{prune_structured, prune_unstructured};
use crate::compress::quantize::{cast_network, quantize_network};
use crate::data::digits::{digits_split, DIGITS_CSV_GZ};
use crate::error::{ModelError, Result};
use crate::layer::LayerReport;
use crate::quality::accuracy_pct;
use crate::train::{tensors_of, train, TrainConfig};
use crate::zoo::net::{predictions, NetSpec, Network};
use crate::zoo::{cnn, mlp};

/// What to build: one cell's model, technique, device and batch size, and where the cache is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Model name from the catalogue.
    pub model: String,
    /// Technique (or chain) name.
    pub technique: String,
    /// Device name (`cpu`).
    pub device: String,
    /// Items per batch.
    pub batch_size: usize,
    /// Tokens per text for text models (default 128); `None` for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<usize>,
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

/// Fine-tune after pruning: half the model's training epochs at learning rate 1e-3.
pub fn finetune_config(model: &str) -> Result<TrainConfig> {
    let tc = train_config(model)?;
    Ok(TrainConfig {
        epochs: (tc.epochs / 2).max(1),
        learning_rate: 1e-3,
        ..tc
    })
}

/// Training of a student (distilled or control): twice the teacher's epochs, since a small
/// network needs more passes to converge; the control gets exactly the same budget.
pub fn student_config(model: &str) -> Result<TrainConfig> {
    let tc = train_config(model)?;
    Ok(TrainConfig {
        epochs: tc.epochs * 2,
        ..tc
    })
}

/// How a model (and its distilled student) is trained.
pub fn train_config(model: &str) -> Result<TrainConfig> {
    match model {
        mlp::NAME => Ok(mlp::train_config()),
        cnn::NAME => Ok(cnn::train_config()),
        other => Err(unknown_model(other)),
    }
}

fn specs(model: &str) -> Result<(NetSpec, NetSpec)> {
    match model {
        mlp::NAME => Ok((mlp::spec(), mlp::student_spec())),
        cnn::NAME => Ok((cnn::spec(), cnn::student_spec())),
        other => Err(unknown_model(other)),
    }
}

fn unknown_model(name: &str) -> ModelError {
    let names: Vec<&str> = MODELS.iter().map(|(n, _)| *n).collect();
    ModelError::Invalid(format!(
        "unknown model {name:?}; known models: {}",
        names.join(", ")
    ))
}

fn base_key(model: &str) -> Result<String> {
    let (spec, _) = specs(model)?;
    Ok(serde_json::json!({
        "model": model,
        "spec": spec,
        "train": train_config(model)?,
        "data_sha256": sha256_hex(DIGITS_CSV_GZ),
        "format": 2,
    })
    .to_string())
}

/// The cache entry of a model's trained base weights.
pub fn base_weights_path(model: &str, cache_dir: &Path) -> Result<PathBuf> {
    Ok(entry_path(cache_dir, model, &base_key(model)?))
}

fn load_network(
    path: &Path,
    build: impl FnOnce() -> Result<Network>,
) -> Result<(Network, CacheOutcome)> {
    let (tensors, outcome) = load_or_build(path, || build()?.to_tensors())?;
    Ok((
        Network::from_tensors(&tensors, &path.display().to_string())?,
        outcome,
    ))
}

/// Trains (or loads from the cache) a model's base weights.
pub fn prepare_base(model: &str, cache_dir: &Path) -> Result<(Network, CacheOutcome)> {
    if !is_model(model) {
        return Err(unknown_model(model));
    }
    let (spec, _) = specs(model)?;
    let tc = train_config(model)?;
    load_network(&base_weights_path(model, cache_dir)?, || {
        let (train_set, _) = digits_split()?;
        train(&Network::init(&spec, tc.seed)?, &train_set, &tc, None, None)
    })
}

/// A variant after its training steps, before any quantization or cast.
#[derive(Debug, Clone)]
pub struct PreparedVariant {
    /// The uncompressed base model.
    pub base: Network,
    /// The model after the chain's training steps (f32).
    pub network: Network,
    /// The post-training step (quantization or cast), if the chain ends in one.
    pub post: Option<Step>,
    /// True when a step pruned weights to zero (the sparse kernel is then considered).
    pub unstructured: bool,
    /// Each step with its parameters, as recorded.
    pub params: Vec<serde_json::Value>,
    /// Whether each training step came from the cache.
    pub outcomes: Vec<CacheOutcome>,
}

fn step_params(step: &Step, model: &str) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(step).map_err(|e| ModelError::Invalid(e.to_string()))?;
    let extra = match step {
        Step::PruneUnstructured { .. } | Step::PruneStructured { .. } => {
            serde_json::json!({ "finetune": finetune_config(model)? })
        }
        Step::Distill { .. } => {
            let (_, student) = specs(model)?;
            serde_json::json!({
                "student": student,
                "temperature": DEFAULT_TEMPERATURE,
                "alpha": DEFAULT_ALPHA,
                "train": student_config(model)?,
            })
        }
        Step::Quantize { format, .. } => serde_json::json!({
            "block_size": crate::compress::quantize::format_by_name(format).map(|f| f.block_size()),
            "fallback": "per layer to the nearest block-32 format with as many bits or more, else f32",
        }),
        Step::Cast { .. } => serde_json::json!({}),
        Step::Int8 => int8_params(),
    };
    if let (Some(obj), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        obj.extend(more.clone());
    }
    Ok(v)
}

fn apply_training_step(step: &Step, net: &Network, model: &str) -> Result<Network> {
    let (train_set, _) = digits_split()?;
    match step {
        Step::PruneUnstructured { sparsity, scope } => {
            let (pruned, masks) = prune_unstructured(net, *sparsity, *scope)?;
            train(
                &pruned,
                &train_set,
                &finetune_config(model)?,
                Some(&masks),
                None,
            )
        }
        Step::PruneStructured { ratio, norm } => {
            let pruned = prune_structured(net, *ratio, *norm)?;
            train(&pruned, &train_set, &finetune_config(model)?, None, None)
        }
        Step::Distill { control } => {
            let (_, student) = specs(model)?;
            let tc = student_config(model)?;
            if *control {
                train_control(&student, &train_set, &tc)
            } else {
                distill(
                    net,
                    &student,
                    &train_set,
                    &tc,
                    DEFAULT_TEMPERATURE,
                    DEFAULT_ALPHA,
                )
            }
        }
        Step::Quantize { .. } | Step::Cast { .. } | Step::Int8 => Err(ModelError::Invalid(
            "a quantization or cast is not a training step".into(),
        )),
    }
}

/// How the `int8` technique quantizes, for the record's step parameters.
pub(crate) fn int8_params() -> serde_json::Value {
    serde_json::json!({
        "weights": "symmetric int8, one scale per output channel and group of inputs",
        "group": crate::layer::INT8_GROUP,
        "activations": "symmetric int8 per row and group, computed at run time",
        "kernel": crate::kernels::CpuFeatures::get().name(),
    })
}

/// Prepares any model's variant (digits or text) ahead of timing; returns whether each training
/// step came from the cache.
pub fn prepare_cell(model: &str, technique: &str, cache_dir: &Path) -> Result<Vec<CacheOutcome>> {
    if crate::text::workload::is_text_model(model) {
        Ok(crate::text::workload::prepare_text_variant(model, technique, cache_dir)?.outcomes)
    } else {
        Ok(prepare_variant(model, technique, cache_dir)?.outcomes)
    }
}

/// Prepares a variant: the base, then each training step of the chain, each cached.
pub fn prepare_variant(model: &str, technique: &str, cache_dir: &Path) -> Result<PreparedVariant> {
    let steps = parse_technique(technique)?;
    let (base, base_outcome) = prepare_base(model, cache_dir)?;
    let mut key = base_key(model)?;
    let mut net = base.clone();
    let mut params = Vec::new();
    let mut outcomes = vec![base_outcome];
    let mut post = None;
    let mut unstructured = false;
    for step in &steps {
        let p = step_params(step, model)?;
        params.push(p.clone());
        if step.is_post_training() {
            post = Some(step.clone());
            continue;
        }
        unstructured |= matches!(step, Step::PruneUnstructured { .. });
        key = format!("{key}|{p}");
        let path = entry_path(cache_dir, &format!("{model}-variant"), &key);
        let (next, outcome) = load_network(&path, || apply_training_step(step, &net, model))?;
        net = next;
        outcomes.push(outcome);
    }
    Ok(PreparedVariant {
        base,
        network: net,
        post,
        unstructured,
        params,
        outcomes,
    })
}

fn median_ms(mut f: impl FnMut() -> Result<()>, reps: usize) -> Result<f64> {
    for _ in 0..3 {
        f()?;
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// For each pruned fully connected layer, times the dense and the CSR path at `batch_size` and
/// keeps the faster (the measured break-even); the report says which and the times.
pub fn choose_sparse_layers(
    net: &Network,
    batch_size: usize,
) -> Result<(Network, Vec<LayerReport>)> {
    use candle_core::Module;
    let mut dense_layers = Vec::new();
    let mut reports = net
        .convs
        .iter()
        .map(|c| c.report())
        .collect::<Result<Vec<_>>>()?;
    for layer in &net.dense {
        if layer.weight_sparsity()? == 0.0 {
            reports.push(layer.report(Some("no zeros: dense".into())));
            dense_layers.push(layer.clone());
            continue;
        }
        let sparse = layer.to_sparse()?;
        let sparse_bytes = sparse.size_bytes();
        let x = Tensor::ones(
            (batch_size, layer.in_dim),
            candle_core::DType::F32,
            &Device::Cpu,
        )?;
        let dense_ms = median_ms(|| Ok(layer.forward(&x).map(|_| ())?), 25)?;
        let sparse_ms = median_ms(|| Ok(sparse.forward(&x).map(|_| ())?), 25)?;
        let (chosen, path) = if sparse_ms < dense_ms {
            (sparse, "csr")
        } else {
            (layer.clone(), "dense")
        };
        // Storage does not depend on the timing: a pruned layer is stored in whichever of CSR and
        // dense is smaller, whichever path runs it.
        let stored = sparse_bytes.min(layer.size_bytes());
        let mut report = chosen.report(Some(format!(
            "stored {}, runs {path}: measured at batch {batch_size}, csr {sparse_ms:.4} ms vs dense {dense_ms:.4} ms",
            if sparse_bytes < layer.size_bytes() { "csr" } else { "dense" }
        )));
        report.bytes = stored;
        reports.push(report);
        dense_layers.push(chosen);
    }
    Ok((
        Network {
            convs: net.convs.clone(),
            dense: dense_layers,
        },
        reports,
    ))
}

/// Builds the workload of one cell: prepares the variant, applies any quantization or cast,
/// chooses dense or sparse execution for pruned layers, fixes the batch.
pub fn build_workload(spec: &WorkloadSpec) -> Result<Box<dyn Workload>> {
    if !is_device(&spec.device) {
        return Err(ModelError::Invalid(format!(
            "unknown device {:?}; valid devices: cpu, cuda:N",
            spec.device
        )));
    }
    let device = crate::device::candle_device(&spec.device)?;
    if spec.batch_size == 0 {
        return Err(ModelError::Invalid("batch size must be at least 1".into()));
    }
    if crate::text::workload::is_text_model(&spec.model) {
        return crate::text::workload::build_text_workload(spec);
    }
    let prepared = prepare_variant(&spec.model, &spec.technique, &spec.cache_dir)?;
    if let Some(Step::Quantize {
        embeddings: true, ..
    }) = &prepared.post
    {
        return Err(ModelError::NotApplicable(format!(
            "{}: {} has no token embeddings; use the plain format",
            spec.technique, spec.model
        )));
    }
    if prepared.unstructured && prepared.post.is_none() && !device.is_cpu() {
        return Err(ModelError::NotApplicable(format!(
            "{}: unstructured pruning pays off through the CSR sparse kernel (sprs), which has no \
             CUDA kernel; on {} the zeros would run dense like fp32",
            spec.technique, spec.device
        )));
    }
    let (model, layers): (Network, Vec<LayerReport>) = match &prepared.post {
        Some(step) => {
            let q = if matches!(step, Step::Int8) {
                crate::compress::quantize::int8_network(&prepared.network)?
            } else if let Some(format) = step.quant_format() {
                quantize_network(&prepared.network, format)?
            } else if let Some(dtype) = step.cast_dtype() {
                cast_network(&prepared.network, dtype)?
            } else {
                return Err(ModelError::Invalid(format!(
                    "unknown post-training step {step:?}"
                )));
            };
            (q.model, q.layers)
        }
        None if prepared.unstructured => choose_sparse_layers(&prepared.network, spec.batch_size)?,
        None => {
            let layers = prepared.network.layer_reports()?;
            (prepared.network.clone(), layers)
        }
    };
    let (_, test) = digits_split()?;
    let (test_x, test_y) = tensors_of(&test)?;
    let rows: Vec<usize> = (0..spec.batch_size).map(|i| i % test.len()).collect();
    let (batch, _) = tensors_of(&test.select(&rows))?;
    let (model, base) = (model.to_device(&device)?, prepared.base.to_device(&device)?);
    let (batch, test_x) = (batch.to_device(&device)?, test_x.to_device(&device)?);
    // Bytes as stored: the layer reports' sums (sparse storage where a pruned layer is smaller so).
    let model_bytes = layers.iter().map(|l| l.bytes).sum();
    Ok(Box::new(ClassifierWorkload {
        model_bytes,
        model,
        base,
        device,
        batch,
        test_x,
        test_labels: test_y.to_vec1::<u32>()?,
        batch_size: spec.batch_size,
        params: serde_json::json!({ "steps": prepared.params }),
        layers,
    }))
}

/// A classifier variant with its fixed timing batch and held-out split.
struct ClassifierWorkload {
    model_bytes: usize,
    model: Network,
    base: Network,
    device: Device,
    batch: Tensor,
    test_x: Tensor,
    test_labels: Vec<u32>,
    batch_size: usize,
    params: serde_json::Value,
    layers: Vec<LayerReport>,
}

impl Workload for ClassifierWorkload {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn run_batch(&mut self) -> Result<()> {
        let logits = self.model.forward(&self.batch)?;
        // CUDA runs asynchronously: the batch is done only when the device says so (a no-op on the
        // CPU). Keeping the result also stops it from being optimised away.
        self.device.synchronize()?;
        std::hint::black_box(logits);
        Ok(())
    }

    fn quality(&self) -> Result<Quality> {
        let variant = predictions(&self.model.forward(&self.test_x)?)?;
        let baseline = predictions(&self.base.forward(&self.test_x)?)?;
        Ok(Quality {
            metric: "accuracy".into(),
            value_pct: accuracy_pct(&variant, &self.test_labels),
            baseline_pct: accuracy_pct(&baseline, &self.test_labels),
            items: self.test_labels.len(),
            fidelity: None,
        })
    }

    fn footprint(&self) -> Result<Footprint> {
        Ok(Footprint {
            parameter_count: self.model.parameter_count(),
            nonzero_parameter_count: self.model.nonzero_parameter_count()?,
            model_bytes: self.model_bytes,
        })
    }

    fn technique_params(&self) -> serde_json::Value {
        self.params.clone()
    }

    fn layers(&self) -> Vec<LayerReport> {
        self.layers.clone()
    }

    /// Counted for MLPs (2 x in x out per layer); convolutions' FLOPs depend on feature-map sizes
    /// the network does not record, so CNNs count none.
    fn flops_per_item(&self) -> Option<f64> {
        if !self.model.convs.is_empty() {
            return None;
        }
        Some(
            self.model
                .dense
                .iter()
                .map(|l| 2.0 * (l.in_dim * l.out_dim) as f64)
                .sum(),
        )
    }
}
