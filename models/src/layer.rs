//! One fully connected layer in whichever storage a technique gave it (f32, a GGML block format on
//! slimbench's own kernels or candle's, slimbench's own int8, a half-precision cast or CSR), with
//! its real storage size.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use serde::{Deserialize, Serialize};
use sprs::CsMatI;

use crate::error::Result;
use crate::kernels::blocks::{BlockFormat, BlockMatrix};
use crate::kernels::epilogue::Epilogue;
use crate::kernels::int8::Int8Matrix;

/// Inputs that share one scale in the `int8` format, for weights and activations alike. On
/// all-MiniLM-L6-v2 (fidelity = mean cosine to fp32 on 32 emails): one scale per whole row gives
/// 0.9978, groups of 128 0.9992, of 64 0.9995, of 32 0.9996 but 20% slower.
pub const INT8_GROUP: usize = 64;

/// How a layer's weight is stored and multiplied.
#[derive(Debug, Clone)]
pub enum WeightStorage {
    /// Plain f32, `out x in` (each output channel's inputs contiguous, as every other storage
    /// and GGUF keep them): a one-row product reads it as dot products streamed from memory, the
    /// AVX-512 tiles pack panels of it, the `gemm` crate and candle read its transpose by strides.
    F32 {
        /// The weight, `out x in`, contiguous.
        weight: Tensor,
    },
    /// A GGML block format (`out x in`, GGML's bytes) multiplied by slimbench's own integer
    /// kernels ([`crate::kernels::blocks`]; CPU only, candle's `QMatMul` on other devices).
    Blocks {
        /// The blocks.
        matrix: Arc<BlockMatrix>,
    },
    /// A candle block-quantized tensor (`out x in`) multiplied through `QMatMul` (the block
    /// formats off the CPU).
    Quantized {
        /// The quantized weight.
        matmul: QMatMul,
        /// Its block format.
        format: GgmlDType,
        /// Bytes the quantized blocks take.
        bytes: usize,
    },
    /// A half-precision cast (f16 or bf16), `out x in` like every other storage; through candle
    /// the input is cast to match and the output back to f32.
    Half {
        /// The weight, `out x in`, in F16 or BF16.
        weight: Tensor,
    },
    /// int8 per output channel, multiplied by activations quantized per row at run time through
    /// slimbench's own kernel ([`crate::kernels::int8`]; CPU only).
    Int8 {
        /// The packed weight.
        matrix: Arc<Int8Matrix>,
    },
    /// Compressed sparse rows (`out x in`, u32 indices) through a CSR x dense kernel (sprs).
    Sparse {
        /// The nonzero weights.
        csr: CsMatI<f32, u32, u32>,
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
    /// Why the format differs from the one asked for, or how the layer runs, where that matters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Fraction of weights that are zero (0..1).
    #[serde(default)]
    pub weight_sparsity: f64,
    /// Bytes of weight and bias as stored.
    pub bytes: usize,
}

impl LayerReport {
    /// True when the layer runs on slimbench's integer kernels on the CPU: `int8` and the GGML
    /// block formats (their products are then held to the integer peak).
    pub fn runs_integer_kernels(&self) -> bool {
        self.format == "int8" || BlockFormat::from_name(&self.format).is_some()
    }
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
                weight: weight.contiguous()?,
            },
            bias,
        })
    }

    /// The weight as f32, `out x in` (dequantized where it is quantized).
    pub fn weight_f32(&self) -> Result<Tensor> {
        Ok(match &self.weight {
            WeightStorage::F32 { weight } => weight.clone(),
            WeightStorage::Quantized { matmul, .. } => match matmul {
                QMatMul::QTensor(q) => q.dequantize(&q.device())?,
                QMatMul::Tensor(t) => t.clone(),
                QMatMul::TensorF16(t) => t.to_dtype(DType::F32)?,
            },
            WeightStorage::Half { weight } => weight.to_dtype(DType::F32)?,
            WeightStorage::Int8 { matrix } => Tensor::from_vec(
                matrix.dequantize(),
                (self.out_dim, self.in_dim),
                &Device::Cpu,
            )?,
            WeightStorage::Blocks { matrix } => Tensor::from_vec(
                matrix.dequantize(),
                (self.out_dim, self.in_dim),
                &Device::Cpu,
            )?,
            WeightStorage::Sparse { csr } => {
                let dense = csr.to_dense();
                let (rows, cols) = (dense.nrows(), dense.ncols());
                Tensor::from_vec(
                    dense.into_raw_vec_and_offset().0,
                    (rows, cols),
                    &Device::Cpu,
                )?
            }
        })
    }

    /// Casts the weight to `dtype` (F16 or BF16).
    pub fn cast(&self, dtype: DType) -> Result<Self> {
        let weight = self.weight_f32()?.contiguous()?.to_dtype(dtype)?;
        Ok(Self {
            weight: WeightStorage::Half { weight },
            ..self.clone()
        })
    }

    /// The same layer stored as CSR (its zeros dropped).
    pub fn to_sparse(&self) -> Result<Self> {
        let w = self.weight_f32()?.to_vec2::<f32>()?;
        let mut indptr = vec![0u32];
        let mut indices = Vec::new();
        let mut data = Vec::new();
        for row in &w {
            for (col, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    indices.push(col as u32);
                    data.push(v);
                }
            }
            indptr.push(indices.len() as u32);
        }
        let csr = CsMatI::new((self.out_dim, self.in_dim), indptr, indices, data);
        Ok(Self {
            weight: WeightStorage::Sparse { csr },
            ..self.clone()
        })
    }

    /// The same layer on `device` (its storage kept). CSR layers have no kernel off the CPU.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        let weight = match &self.weight {
            WeightStorage::F32 { weight } => WeightStorage::F32 {
                weight: weight.to_device(device)?,
            },
            WeightStorage::Half { weight } => WeightStorage::Half {
                weight: weight.to_device(device)?,
            },
            WeightStorage::Blocks { .. } if device.is_cpu() => self.weight.clone(),
            // The same blocks, through candle's kernels for the device.
            WeightStorage::Blocks { matrix } => qmatmul_storage(matrix, device)?,
            WeightStorage::Quantized { format, .. } => {
                let cpu = self.weight_f32()?.to_device(&Device::Cpu)?;
                let qtensor = QTensor::quantize_onto(&cpu, *format, device)?;
                WeightStorage::Quantized {
                    bytes: qtensor.storage_size_in_bytes(),
                    matmul: QMatMul::from_qtensor(qtensor)?,
                    format: *format,
                }
            }
            WeightStorage::Sparse { .. } | WeightStorage::Int8 { .. } if device.is_cpu() => {
                self.weight.clone()
            }
            WeightStorage::Int8 { .. } => {
                return Err(crate::error::ModelError::NotApplicable(format!(
                    "layer {} is stored as slimbench's int8, whose kernel runs on the CPU only",
                    self.name
                )))
            }
            WeightStorage::Sparse { .. } => {
                return Err(crate::error::ModelError::NotApplicable(format!(
                    "layer {} is stored as CSR (sprs), which has no kernel off the CPU",
                    self.name
                )))
            }
        };
        Ok(Self {
            weight,
            bias: self.bias.to_device(device)?,
            ..self.clone()
        })
    }

    /// The same layer on `device` with candle's kernels: the GGML block formats through
    /// `QMatMul` on every device, the CPU included (so that the CPU runs the code a GPU runs),
    /// every other storage as [`DenseLayer::to_device`] moves it.
    pub fn to_device_on_candle_kernels(&self, device: &Device) -> Result<Self> {
        match &self.weight {
            WeightStorage::Blocks { matrix } => Ok(Self {
                weight: qmatmul_storage(matrix, device)?,
                bias: self.bias.to_device(device)?,
                ..self.clone()
            }),
            _ => self.to_device(device),
        }
    }

    /// True when the weight is stored as CSR.
    pub fn is_sparse(&self) -> bool {
        matches!(self.weight, WeightStorage::Sparse { .. })
    }

    /// Fraction of the weight's entries that are zero.
    pub fn weight_sparsity(&self) -> Result<f64> {
        let n = self.in_dim * self.out_dim;
        let nonzero = match &self.weight {
            WeightStorage::Sparse { csr } => csr.nnz(),
            _ => self
                .weight_f32()?
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .filter(|v| **v != 0.0)
                .count(),
        };
        Ok(1.0 - nonzero as f64 / n.max(1) as f64)
    }

    /// Quantizes the weight to `format`; the caller has checked that `in_dim` fits its block.
    /// The formats of [`BlockFormat`] run on slimbench's own kernels, the others on candle's.
    pub fn quantized(&self, format: GgmlDType) -> Result<Self> {
        let weight = self.weight_f32()?;
        let qtensor = QTensor::quantize(&weight, format)?;
        if BlockFormat::from_ggml(format).is_some() && weight.device().is_cpu() {
            return Ok(Self {
                weight: WeightStorage::Blocks {
                    matrix: Arc::new(BlockMatrix::from_qtensor(&qtensor)?),
                },
                ..self.clone()
            });
        }
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

    /// The weight as int8, one scale per output channel and group of [`INT8_GROUP`] inputs (see
    /// [`WeightStorage::Int8`]).
    pub fn int8(&self) -> Result<Self> {
        let weight = self.weight_f32()?.flatten_all()?.to_vec1::<f32>()?;
        let matrix = Int8Matrix::quantize(&weight, self.out_dim, self.in_dim, Some(INT8_GROUP));
        Ok(Self {
            weight: WeightStorage::Int8 {
                matrix: Arc::new(matrix),
            },
            ..self.clone()
        })
    }

    /// `dst = epilogue(x W^T)` for `rows` rows of `x` through slimbench's own integer kernels,
    /// where the weight runs on one (`int8`, a block format on the CPU): `true`; `false`, with
    /// nothing written, for every other storage.
    pub fn matmul_own_kernel(
        &self,
        x: &[f32],
        rows: usize,
        dst: &mut [f32],
        epilogue: Epilogue<'_>,
    ) -> bool {
        match &self.weight {
            WeightStorage::Int8 { matrix } => matrix.matmul(x, rows, dst, epilogue),
            WeightStorage::Blocks { matrix } => matrix.matmul(x, rows, dst, epilogue),
            _ => return false,
        }
        true
    }

    /// The format name of the weight.
    pub fn format(&self) -> &'static str {
        match &self.weight {
            WeightStorage::F32 { .. } => "f32",
            WeightStorage::Quantized { format, .. } => format_name(*format),
            WeightStorage::Blocks { matrix } => format_name(matrix.format().ggml()),
            WeightStorage::Half { weight } => {
                if weight.dtype() == DType::BF16 {
                    "bf16"
                } else {
                    "f16"
                }
            }
            WeightStorage::Int8 { .. } => "int8",
            WeightStorage::Sparse { .. } => "f32-csr",
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
            WeightStorage::Blocks { matrix } => matrix.size_bytes(),
            WeightStorage::Half { .. } => self.in_dim * self.out_dim * 2,
            WeightStorage::Int8 { matrix } => matrix.size_bytes(),
            // f32 values, u32 column indices, u32 row pointers.
            WeightStorage::Sparse { csr } => csr.nnz() * 8 + (self.out_dim + 1) * 4,
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
            weight_sparsity: self.weight_sparsity().unwrap_or(0.0),
            bytes: self.size_bytes(),
        }
    }
}

/// GGML blocks as a candle `QMatMul` on `device`, byte for byte.
fn qmatmul_storage(matrix: &BlockMatrix, device: &Device) -> Result<WeightStorage> {
    let qtensor = matrix.to_qtensor(device)?;
    Ok(WeightStorage::Quantized {
        bytes: qtensor.storage_size_in_bytes(),
        matmul: QMatMul::from_qtensor(qtensor)?,
        format: matrix.format().ggml(),
    })
}

impl Module for DenseLayer {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = match &self.weight {
            WeightStorage::F32 { weight } => x.matmul(&weight.t()?)?,
            WeightStorage::Quantized { matmul, .. } => matmul.forward(x)?,
            WeightStorage::Half { weight } => x
                .to_dtype(weight.dtype())?
                .matmul(&weight.t()?)?
                .to_dtype(DType::F32)?,
            WeightStorage::Sparse { csr } => csr_forward(csr, x)?,
            WeightStorage::Int8 { .. } | WeightStorage::Blocks { .. } => {
                return own_kernel_forward(self, x)
            }
        };
        y.broadcast_add(&self.bias)
    }
}

/// `x W^T + b` through slimbench's own integer kernel of `layer` (see
/// [`DenseLayer::matmul_own_kernel`]), for a batch `rows x in` on the CPU.
fn own_kernel_forward(layer: &DenseLayer, x: &Tensor) -> candle_core::Result<Tensor> {
    let (rows, _) = x.dims2()?;
    let input = x.flatten_all()?.to_vec1::<f32>()?;
    let bias = layer.bias.to_vec1::<f32>()?;
    let mut out = vec![0f32; rows * layer.out_dim];
    let epilogue = Epilogue {
        bias: Some(&bias),
        ..Default::default()
    };
    layer.matmul_own_kernel(&input, rows, &mut out, epilogue);
    Tensor::from_vec(out, (rows, layer.out_dim), x.device())
}

/// `x W^T` for a CSR weight `out x in` and a dense batch `rows x in`: Y^T = W X^T through sprs's
/// CSR x dense row-major kernel (vectorised over the batch), then transposed back.
fn csr_forward(csr: &CsMatI<f32, u32, u32>, x: &Tensor) -> candle_core::Result<Tensor> {
    let (rows, in_dim) = x.dims2()?;
    let x_t = x.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let x_t = ndarray::ArrayView2::from_shape((in_dim, rows), &x_t)
        .map_err(|e| candle_core::Error::Msg(format!("CSR input shape: {e}")))?;
    let mut y_t = ndarray::Array2::<f32>::zeros((csr.rows(), rows));
    sprs::prod::csr_mulacc_dense_rowmaj(csr.view(), x_t, y_t.view_mut());
    let out = csr.rows();
    Tensor::from_vec(y_t.into_raw_vec_and_offset().0, (out, rows), x.device())?
        .t()?
        .contiguous()
}
