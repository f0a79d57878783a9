//! What every family's ONNX Runtime workload shares: a Linear's f32 parameters read from a
//! [`DenseLayer`], its report in an ONNX format, the engine's recorded parameters (library
//! version, threads, execution mode, graph optimisation, formats written), and the timed
//! workload itself ([`OrtWorkload`]).

use crate::error::{ModelError, Result};
use crate::layer::{DenseLayer, LayerReport};
use crate::onnx::graph::GraphBuilder;
use crate::onnx::linear::{emit, LinearParams, OnnxFormat, NBITS_ACCURACY_LEVEL, NBITS_BLOCK};
use crate::onnx::runtime::{self, OrtModel};
use crate::workload::{Built, Quality, VariantReport, Workload};

/// A Linear's f32 weight (`out x in`, row-major) and bias.
pub struct LinearValues {
    /// The layer's name.
    pub name: String,
    /// Output width.
    pub out: usize,
    /// Input width.
    pub inputs: usize,
    /// The weight, `out x in`.
    pub weight: Vec<f32>,
    /// The bias.
    pub bias: Vec<f32>,
}

impl LinearValues {
    /// Reads `layer`'s f32 weight and bias (a layer of f32 storage: what training steps leave).
    pub fn of(layer: &DenseLayer) -> Result<Self> {
        if !matches!(layer.weight, crate::layer::WeightStorage::F32 { .. }) {
            return Err(ModelError::Invalid(format!(
                "{}: the ONNX export reads f32 weights, not {}",
                layer.name,
                layer.format()
            )));
        }
        Ok(Self {
            name: layer.name.clone(),
            out: layer.out_dim,
            inputs: layer.in_dim,
            weight: layer.weight_f32()?.flatten_all()?.to_vec1::<f32>()?,
            bias: layer.bias.to_vec1::<f32>()?,
        })
    }

    /// The borrowed parameters [`emit`] takes.
    pub fn params(&self) -> LinearParams<'_> {
        LinearParams {
            name: &self.name,
            out: self.out,
            inputs: self.inputs,
            weight: &self.weight,
            bias: &self.bias,
        }
    }

    /// Writes the Linear into `g` in `format`; returns the output's name.
    pub fn emit(&self, g: &mut GraphBuilder, x: &str, format: OnnxFormat) -> String {
        emit(g, x, self.params(), format)
    }

    /// The Linear's report in `format`.
    pub fn report(&self, format: OnnxFormat) -> LayerReport {
        let zeros = self.weight.iter().filter(|v| **v == 0.0).count();
        LayerReport {
            name: self.name.clone(),
            in_dim: self.inputs,
            out_dim: self.out,
            format: format.name().into(),
            note: Some(format!("ONNX Runtime: {}", format.operators())),
            weight_sparsity: zeros as f64 / self.weight.len().max(1) as f64,
            bytes: format.bytes(self.out, self.inputs),
        }
    }
}

/// The engine's parameters for a cell's record: `technique_params.engine`.
pub fn engine_params(format: OnnxFormat, threads: usize) -> Result<serde_json::Value> {
    let mut params = serde_json::json!({
        "name": "ort",
        "onnxruntime": runtime::version()?,
        "library": runtime::library_path()?.display().to_string(),
        "ort_crate": "2.0.0-rc.15",
        "intra_op_threads": threads,
        "execution": "sequential",
        "graph_optimization": runtime::OPTIMIZATION,
        "linear_format": format.name(),
        "linear_operators": format.operators(),
    });
    if let OnnxFormat::Q4 { .. } = format {
        params["block_size"] = NBITS_BLOCK.into();
        params["accuracy_level"] = NBITS_ACCURACY_LEVEL.into();
    }
    Ok(params)
}

/// A variant on ONNX Runtime: its session with the fixed timing inputs, and its quality,
/// evaluated when it was built (from ONNX Runtime's outputs).
pub struct OrtWorkload {
    /// The session, its inputs set.
    pub model: OrtModel,
    /// Items a timed call runs.
    pub batch_size: usize,
    /// The variant's quality against the uncompressed model.
    pub quality: Quality,
}

impl OrtWorkload {
    /// A cell's build: `model` timed on batches of `batch_size`, with its `quality` and `report`.
    pub fn built(
        model: OrtModel,
        batch_size: usize,
        quality: Quality,
        report: VariantReport,
    ) -> Built {
        Built {
            workload: Box::new(Self {
                model,
                batch_size,
                quality,
            }),
            report,
        }
    }
}

impl Workload for OrtWorkload {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn run_batch(&mut self) -> Result<()> {
        self.model.run_unread()
    }

    fn quality(&self) -> Result<Quality> {
        Ok(self.quality.clone())
    }
}
