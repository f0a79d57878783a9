//! A Linear on the CPU into slimbench's own row buffers: f32 through [`crate::kernels::linear`],
//! the integer kernels (int8, block formats) adding the bias and residual as they store each
//! tile, and every other storage through candle.

use candle_core::{DType, Storage, Tensor};

use crate::error::{ModelError, Result};
use crate::kernels::elementwise::gelu_erf_in_place;
use crate::kernels::epilogue::Epilogue;
use crate::kernels::f32_rows::{self, RowWeights};
use crate::kernels::linear::linear;
use crate::kernels::qgemm::ONE_ROW_MAX_ROWS;
use crate::kernels::sgemm::MatRef;
use crate::kernels::{bf16_tile, f32_tile, Isa};
use crate::layer::{DenseLayer, WeightStorage};

/// Runs `f` on the elements of a contiguous f32 CPU tensor, without copying them.
pub(crate) fn with_f32_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    with_slice(t, f)
}

/// Runs `f` on the elements of a contiguous CPU tensor of `T`, without copying them.
fn with_slice<T: candle_core::WithDType, R>(t: &Tensor, f: impl FnOnce(&[T]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => {
            let all = cpu.as_slice::<T>()?;
            let start = layout.start_offset();
            Ok(f(&all[start..start + layout.shape().elem_count()]))
        }
        _ => Err(ModelError::Invalid(
            "the CPU inference path got a tensor that is not on the CPU".into(),
        )),
    }
}

/// What runs the f32 and half-precision Linears among `layers` on this CPU, as records name it:
/// `f32_kernel`, `bf16_kernel` and `f16_kernel` entries for the families whose CPU inference goes
/// through [`linear_into`] (text and language models), for the formats the layers hold.
pub(crate) fn kernel_params(
    layers: &[crate::layer::LayerReport],
) -> serde_json::Map<String, serde_json::Value> {
    let mut params = serde_json::Map::new();
    if layers.iter().any(|l| l.format == "f32") {
        params.insert(
            "f32_kernel".into(),
            crate::kernels::linear::kernel_name().into(),
        );
    }
    if layers.iter().any(|l| l.format == "bf16") {
        params.insert("bf16_kernel".into(), bf16_tile::linear_kernel_name().into());
    }
    if layers.iter().any(|l| l.format == "f16") {
        params.insert(
            "f16_kernel".into(),
            crate::kernels::linear::f16_kernel_name().into(),
        );
    }
    params
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
    let own_kernel = match &layer.weight {
        WeightStorage::Half { .. } => {
            // bf16 on `vdpbf16ps` or, like f16, on the f32 tiles.
            rows <= ONE_ROW_MAX_ROWS || f32_tile::runs_half_on(Isa::get())
        }
        storage => matches!(
            storage,
            WeightStorage::F32 { .. } | WeightStorage::Int8 { .. } | WeightStorage::Blocks { .. }
        ),
    };
    if own_kernel {
        // slimbench's own products add the bias (read in place: a decode step of a language
        // model runs over a hundred of these, and none should copy it), the residual and GELU as
        // they store. f32 on the AVX-512 tiles, AVX2's dot tiles or the gemm crate
        // (`kernels::linear`); f16 and bf16 of one to four rows streamed and widened
        // (`f32_rows`), f16 of more on the f32 tiles (each panel widened), bf16 of more on
        // `vdpbf16ps` where the CPU has it, else on the f32 tiles too; int8 and the block
        // formats on the integer kernels.
        return with_f32_slice(&layer.bias, |bias| {
            let epilogue = Epilogue {
                bias: Some(bias),
                residual,
                gelu,
            };
            let x = MatRef::new(x, rows, k);
            let isa = Isa::get();
            match &layer.weight {
                WeightStorage::F32 { weight } => {
                    with_f32_slice(weight, |w| linear(x, w, n, dst, epilogue))
                }
                WeightStorage::Half { weight } if weight.dtype() == DType::F16 => {
                    with_slice(weight, |w: &[half::f16]| {
                        if !f32_rows::matmul(isa, x, RowWeights::F16(w), n, dst, epilogue) {
                            f32_tile::matmul(isa, x, w, n, dst, epilogue);
                        }
                    })
                }
                WeightStorage::Half { weight } => with_slice(weight, |w: &[half::bf16]| {
                    if !f32_rows::matmul(isa, x, RowWeights::Bf16(w), n, dst, epilogue)
                        && !bf16_tile::matmul(isa, x, w, n, dst, epilogue)
                    {
                        f32_tile::matmul(isa, x, w, n, dst, epilogue);
                    }
                }),
                // int8 and the block formats (the only other storages let in above).
                _ => {
                    layer.matmul_own_kernel(x.data, rows, dst, epilogue);
                    Ok(())
                }
            }
        })?;
    }
    // candle's kernels for half precision of five rows or more on the portable path, CSR and
    // the block formats off the CPU.
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
    if gelu {
        gelu_erf_in_place(dst);
    }
    Ok(())
}
