//! The small interface through which the harness reaches a model variant: run one batch, report
//! quality and footprint. Nothing in it exposes candle types, so the harness's meters, statistics
//! and exporters stay free of the tensor library.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::cache::{entry_path, load_or_build, sha256_hex, CacheOutcome};
use crate::catalog::{is_device, is_model, is_technique, BASELINE};
use crate::compress::quantize::{format_by_name, quantize_mlp};
use crate::data::digits::{digits_split, DIGITS_CSV_GZ};
use crate::error::{ModelError, Result};
use crate::layer::LayerReport;
use crate::quality::accuracy_pct;
use crate::zoo::mlp::{predictions, tensors_of, train_mlp, Mlp, MlpConfig, TrainConfig};

/// What to build: one cell's model, technique, device and batch size, and where the cache is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Model name from the catalogue.
    pub model: String,
    /// Technique name from the catalogue.
    pub technique: String,
    /// Device name (`cpu`).
    pub device: String,
    /// Items per batch.
    pub batch_size: usize,
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
}

/// Parameter counts and storage size of a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footprint {
    /// All parameters.
    pub parameter_count: usize,
    /// Parameters that are not zero.
    pub nonzero_parameter_count: usize,
    /// Bytes of the weights as stored (quantized blocks at their real size).
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
}

const DIGITS_MLP: &str = "digits-mlp";

fn digits_mlp_config() -> MlpConfig {
    MlpConfig {
        input: 64,
        hidden: vec![256, 128],
        classes: 10,
    }
}

/// The cache entry of a model's trained base weights.
pub fn base_weights_path(model: &str, cache_dir: &Path) -> Result<PathBuf> {
    match model {
        DIGITS_MLP => {
            let key = serde_json::json!({
                "model": model,
                "config": digits_mlp_config(),
                "train": TrainConfig::default(),
                "data_sha256": sha256_hex(DIGITS_CSV_GZ),
                "format": 1,
            });
            Ok(entry_path(cache_dir, model, &key.to_string()))
        }
        other => Err(unknown_model(other)),
    }
}

fn unknown_model(name: &str) -> ModelError {
    let names: Vec<&str> = crate::catalog::MODELS.iter().map(|(n, _)| *n).collect();
    ModelError::Invalid(format!(
        "unknown model {name:?}; known models: {}",
        names.join(", ")
    ))
}

/// Trains (or loads from the cache) a model's base weights.
pub fn prepare_base(model: &str, cache_dir: &Path) -> Result<(Mlp, CacheOutcome)> {
    if !is_model(model) {
        return Err(unknown_model(model));
    }
    let path = base_weights_path(model, cache_dir)?;
    let (tensors, outcome) = load_or_build(&path, || {
        let (train, _) = digits_split()?;
        train_mlp(&digits_mlp_config(), &train, &TrainConfig::default())?.to_tensors()
    })?;
    let mlp = Mlp::from_tensors(&tensors, &path.display().to_string())?;
    Ok((mlp, outcome))
}

/// Builds the workload of one cell: loads the base, applies the technique, fixes the batch.
pub fn build_workload(spec: &WorkloadSpec) -> Result<Box<dyn Workload>> {
    if !is_technique(&spec.technique) {
        return Err(ModelError::Invalid(format!(
            "unknown technique {:?}",
            spec.technique
        )));
    }
    if !is_device(&spec.device) {
        return Err(ModelError::Invalid(format!(
            "unknown device {:?}",
            spec.device
        )));
    }
    if spec.batch_size == 0 {
        return Err(ModelError::Invalid("batch size must be at least 1".into()));
    }
    let (base, _) = prepare_base(&spec.model, &spec.cache_dir)?;
    let (model, layers, params) = if spec.technique == BASELINE {
        let layers = base.layer_reports();
        (base.clone(), layers, serde_json::json!({}))
    } else {
        let format = format_by_name(&spec.technique)
            .ok_or_else(|| ModelError::Invalid(format!("unknown technique {}", spec.technique)))?;
        let q = quantize_mlp(&base, format)?;
        let params = serde_json::json!({
            "format": spec.technique,
            "block_size": format.block_size(),
            "fallback": "per layer to the nearest block-32 format with as many bits or more, else f32",
        });
        (q.model, q.layers, params)
    };
    let (_, test) = digits_split()?;
    let (test_x, test_y) = tensors_of(&test)?;
    let rows: Vec<usize> = (0..spec.batch_size).map(|i| i % test.len()).collect();
    let (batch, _) = tensors_of(&test.select(&rows))?;
    Ok(Box::new(ClassifierWorkload {
        model,
        base,
        batch,
        test_x,
        test_labels: test_y.to_vec1::<u32>()?,
        batch_size: spec.batch_size,
        params,
        layers,
    }))
}

/// A classifier variant with its fixed timing batch and held-out split.
struct ClassifierWorkload {
    model: Mlp,
    base: Mlp,
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
        // The CPU backend is synchronous; this also keeps the result from being optimised away.
        Device::Cpu.synchronize()?;
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
        })
    }

    fn footprint(&self) -> Result<Footprint> {
        Ok(Footprint {
            parameter_count: self.model.parameter_count(),
            nonzero_parameter_count: self.model.nonzero_parameter_count()?,
            model_bytes: self.model.size_bytes(),
        })
    }

    fn technique_params(&self) -> serde_json::Value {
        self.params.clone()
    }

    fn layers(&self) -> Vec<LayerReport> {
        self.layers.clone()
    }
}
