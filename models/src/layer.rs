//! One fully connected layer in whichever storage a technique gave it (f32, a candle quantized
//! block format, or a half-precision cast), with its real storage size.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// How a layer's weight is stored and multiplied.
#[derive(Debug, Clone)]
pub enum WeightStorage {
    /// Plain f32, kept transposed (`in x out`) so the forward pass is one contiguous matmul.
    F32 {
        /// The weight, transposed: `in x out`.
        weight_t: Tensor,
    },
    /// A candle block-quantized tensor (`out x in`) multiplied through `QMatMul`.
    Quantized {
        /// The quantized weight.
        matmul: QMatMul,
        /// Its block format.
        format: GgmlDType,
        /// Bytes the quantized blocks take.
        bytes: usize,
    },
}

/// A fully connected layer: `y = x W^T + b`.
#[derive(Debug, Clone)]
pub struct DenseLayer {
    /// Stable name (`layers.0`, ...), used in records and weight files.
    pub name: String,
    /// Input width.
    pub in_dim: usize,
    /// Output width.
    pub out_dim: usize,
    /// The weight in its storage.
    pub weight: WeightStorage,
    /// The bias, f32, length `out_dim`.
    pub bias: Tensor,
}

/// What one layer ended up as, for the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    /// Layer name.
    pub name: String,
    /// Input width.
    pub in_dim: usize,
    /// Output width.
    pub out_dim: usize,
    /// Storage format of the weight (`f32`, `q8_0`, ...).
    pub format: String,
    /// Why the format differs from the one asked for, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Bytes of weight and bias as stored.
    pub bytes: usize,
}

/// The lower-case name slimbench uses for a candle block format (`q8_0`, `q4k`, ...).
pub fn format_name(format: GgmlDType) -> &'static str {
    match format {
        GgmlDType::F32 => "f32",
        GgmlDType::F16 => "f16",
        GgmlDType::BF16 => "bf16",
        GgmlDType::Q4_0 => "q4_0",
        GgmlDType::Q4_1 => "q4_1",
        GgmlDType::Q5_0 => "q5_0",
        GgmlDType::Q5_1 => "q5_1",
        GgmlDType::Q8_0 => "q8_0",
        GgmlDType::Q8_1 => "q8_1",
        GgmlDType::Q2K => "q2k",
        GgmlDType::Q3K => "q3k",
        GgmlDType::Q4K => "q4k",
        GgmlDType::Q5K => "q5k",
        GgmlDType::Q6K => "q6k",
        GgmlDType::Q8K => "q8k",
    }
}

impl DenseLayer {
    /// Builds an f32 layer from a weight `out x in` and a bias `out`.
    pub fn from_f32(name: impl Into<String>, weight: &Tensor, bias: Tensor) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        Ok(Self {
            name: name.into(),
            in_dim,
            out_dim,
            weight: WeightStorage::F32 {
                weight_t: weight.t()?.contiguous()?,
            },
            bias,
        })
    }

    /// The weight as f32, `out x in` (dequantized where it is quantized).
    pub fn weight_f32(&self) -> Result<Tensor> {
        Ok(match &self.weight {
            WeightStorage::F32 { weight_t } => weight_t.t()?.contiguous()?,
            WeightStorage::Quantized { matmul, .. } => match matmul {
                QMatMul::QTensor(q) => q.dequantize(&q.device())?,
                QMatMul::Tensor(t) => t.clone(),
                QMatMul::TensorF16(t) => t.to_dtype(DType::F32)?,
            },
        })
    }

    /// Quantizes the weight to `format`; the caller has checked that `in_dim` fits its block.
    pub fn quantized(&self, format: GgmlDType) -> Result<Self> {
        let weight = self.weight_f32()?;
        let qtensor = QTensor::quantize(&weight, format)?;
        let bytes = qtensor.storage_size_in_bytes();
        Ok(Self {
            name: self.name.clone(),
            in_dim: self.in_dim,
            out_dim: self.out_dim,
            weight: WeightStorage::Quantized {
                matmul: QMatMul::from_qtensor(qtensor)?,
                format,
                bytes,
            },
            bias: self.bias.clone(),
        })
    }

    /// The format name of the weight.
    pub fn format(&self) -> &'static str {
        match &self.weight {
            WeightStorage::F32 { .. } => "f32",
            WeightStorage::Quantized { format, .. } => format_name(*format),
        }
    }

    /// Number of parameters (weights and biases).
    pub fn parameter_count(&self) -> usize {
        self.in_dim * self.out_dim + self.out_dim
    }

    /// Number of parameters that are not zero (after dequantization for quantized layers).
    pub fn nonzero_parameter_count(&self) -> Result<usize> {
        let count = |t: &Tensor| -> Result<usize> {
            Ok(t.flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .filter(|v| **v != 0.0)
                .count())
        };
        Ok(count(&self.weight_f32()?)? + count(&self.bias)?)
    }

    /// Bytes of weight and bias as stored.
    pub fn size_bytes(&self) -> usize {
        let weight = match &self.weight {
            WeightStorage::F32 { .. } => self.in_dim * self.out_dim * 4,
            WeightStorage::Quantized { bytes, .. } => *bytes,
        };
        weight + self.out_dim * 4
    }

    /// The record entry for this layer.
    pub fn report(&self, note: Option<String>) -> LayerReport {
        LayerReport {
            name: self.name.clone(),
            in_dim: self.in_dim,
            out_dim: self.out_dim,
            format: self.format().to_string(),
            note,
            bytes: self.size_bytes(),
        }
    }
}

impl Module for DenseLayer {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = match &self.weight {
            WeightStorage::F32 { weight_t } => x.matmul(weight_t)?,
            WeightStorage::Quantized { matmul, .. } => matmul.forward(x)?,
        };
        y.broadcast_add(&self.bias)
    }
}
