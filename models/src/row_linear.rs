//! A Linear on the CPU into slimbench's own row buffers: the f32 path accumulates onto a buffer
//! that already holds the bias and residual (the gemm crate), the integer kernels (int8, block
//! formats) add them as they store each tile, and every other storage goes through candle.

use candle_core::{Storage, Tensor};

use crate::error::{ModelError, Result};
use crate::kernels::elementwise::{fill_rows, gelu_erf_in_place};
use crate::kernels::epilogue::Epilogue;
use crate::kernels::sgemm::{matmul_into, MatRef, Threads};
use crate::kernels::thread_count;
use crate::layer::{DenseLayer, WeightStorage};

/// Runs `f` on the elements of a contiguous f32 CPU tensor, without copying them.
pub(crate) fn with_f32_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => {
            let all = cpu.as_slice::<f32>()?;
            let start = layout.start_offset();
            Ok(f(&all[start..start + layout.shape().elem_count()]))
        }
        _ => Err(ModelError::Invalid(
            "the CPU inference path got a tensor that is not on the CPU".into(),
        )),
    }
}

pub(crate) fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// `dst = x W^T + b (+ residual)`, then GELU if `gelu`, for `rows` rows of `x`; `dst` is sized
/// `rows x out_dim` here. The int8 kernel does it all as it stores each tile.
pub(crate) fn linear_into(
    layer: &DenseLayer,
    x: &[f32],
    rows: usize,
    dst: &mut Vec<f32>,
    residual: Option<&[f32]>,
    gelu: bool,
) -> Result<()> {
    let (k, n) = (layer.in_dim, layer.out_dim);
    dst.resize(rows * n, 0.0);
    match &layer.weight {
        // The gemm crate accumulates onto the bias and residual (its kernels beat a tile kernel
        // of slimbench's own when the weights stream from memory, as MiniLM's 42 MB do).
        WeightStorage::F32 { weight_t } => {
            with_f32_slice(&layer.bias, |bias| fill_rows(dst, bias, residual))?;
            with_f32_slice(weight_t, |w| {
                matmul_into(
                    dst,
                    n,
                    MatRef::new(x, rows, k),
                    MatRef::new(w, k, n),
                    1.0,
                    true,
                    Threads::Up(thread_count()),
                )
            })?;
        }
        WeightStorage::Int8 { .. } | WeightStorage::Blocks { .. } => {
            // The bias is read in place: each decode step of a language model runs over a
            // hundred of these products, and none should copy it.
            return with_f32_slice(&layer.bias, |bias| {
                let epilogue = Epilogue {
                    bias: Some(bias),
                    residual,
                    gelu,
                };
                layer.matmul_own_kernel(x, rows, dst, epilogue);
            });
        }
        // candle's kernels for half precision, CSR and the block formats off the CPU.
        _ => {
            let input = Tensor::from_slice(x, (rows, k), &candle_core::Device::Cpu)?;
            let y = to_vec(&candle_core::Module::forward(layer, &input)?)?;
            match residual {
                Some(res) => {
                    for ((d, y), r) in dst.iter_mut().zip(&y).zip(res) {
                        *d = y + r;
                    }
                }
                None => dst.copy_from_slice(&y),
            }
        }
    }
    if gelu {
        gelu_erf_in_place(dst);
    }
    Ok(())
}
