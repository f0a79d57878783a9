//! A Linear's f32 product on the CPU, whichever kernel runs it: dot products for one to four
//! rows ([`crate::kernels::f32_rows`], memory-bound), slimbench's AVX-512 tiles
//! ([`crate::kernels::f32_tile`]) for more where the path has AVX-512, its AVX2 dot tiles
//! ([`crate::kernels::f32_dots`]) where it has AVX2 and FMA, the `gemm` crate
//! ([`crate::kernels::sgemm`]) on the portable path. The weight is `out x in` throughout.

use crate::kernels::elementwise::{fill_rows, gelu_erf_in_place};
use crate::kernels::epilogue::Epilogue;
use crate::kernels::sgemm::{matmul_into, MatRef, Threads};
use crate::kernels::{f32_dots, f32_rows, f32_tile, thread_count, Isa};

/// `dst = epilogue(x W^T)`, a Linear's f32 product: the contiguous `rows x k` activations `x` by
/// the row-major `n x k` weight `w` (`out x in`), into `dst` (`rows x n`). slimbench's own
/// kernels add the epilogue as they store; the `gemm` crate accumulates onto a buffer that
/// already holds the bias and residual, and GELU runs after. [`kernel_name`] says which runs.
pub fn linear(x: MatRef<'_>, w: &[f32], n: usize, dst: &mut [f32], epilogue: Epilogue<'_>) {
    let isa = Isa::get();
    if f32_rows::matmul(isa, x, f32_rows::RowWeights::F32(w), n, dst, epilogue)
        || f32_tile::matmul(isa, x, w, n, dst, epilogue)
        || f32_dots::matmul(isa, x, w, n, dst, epilogue)
    {
        return;
    }
    epilogue.check(x.rows, n);
    match epilogue.bias {
        Some(bias) => fill_rows(dst, bias, epilogue.residual),
        None => match epilogue.residual {
            Some(res) => dst.copy_from_slice(res),
            None => dst.fill(0.0),
        },
    }
    let w = MatRef::new(w, n, x.cols).t();
    matmul_into(dst, n, x, w, 1.0, true, Threads::Up(thread_count()));
    if epilogue.gelu {
        gelu_erf_in_place(dst);
    }
}

/// What runs the f32 Linears of slimbench's own CPU inference (text and language models) on the
/// path in use, as records name it (`technique_params.f32_kernel`): the products of more than
/// four rows ([`f32_tile`] on AVX-512, [`f32_dots`] on AVX2, else the `gemm` crate, which picks
/// its own instructions, FMA where the CPU has it whatever `SLIMBENCH_KERNELS` says), then `+`
/// the one-row kernel ([`f32_rows`]): `f32-tiles-avx512+f32-rows-avx512`,
/// `f32-dots-avx2+f32-rows-avx2`, `gemm-crate-fma+f32-rows-portable`, ...
pub fn kernel_name() -> String {
    let isa = Isa::get();
    let tiles = if f32_tile::runs_on(isa) {
        f32_tile::name(isa, "f32")
    } else if f32_dots::runs_on(isa) {
        f32_dots::NAME.into()
    } else if gemm_crate_has_fma() {
        "gemm-crate-fma".into()
    } else {
        "gemm-crate".into()
    };
    format!("{tiles}+{}", f32_rows::name(isa))
}

/// Whether the `gemm` crate finds FMA on this CPU (it detects it itself).
fn gemm_crate_has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        return true;
    }
    false
}

/// What runs an f16 Linear on the path in use, as records name it: the f32 tiles widening each
/// panel (AVX-512, AVX2) or candle's widening (portable) for five rows or more, then the one-row
/// kernel (`f16-tiles-avx512+f16-rows-avx512`, `f16-tiles-avx2+f16-rows-avx2`,
/// `candle-widened-f32+f16-rows-portable`).
pub fn f16_kernel_name() -> String {
    let isa = Isa::get();
    let tiles = if f32_tile::runs_half_on(isa) {
        f32_tile::name(isa, "f16")
    } else {
        "candle-widened-f32".into()
    };
    format!("{tiles}+{}", f32_rows::half_name(isa, false))
}
