//! A Linear's f32 product on the CPU, whichever kernel runs it: slimbench's AVX-512 tiles
//! ([`crate::kernels::f32_tile`]) where the path has AVX-512 and the product has five rows or
//! more, the `gemm` crate ([`crate::kernels::sgemm`]) otherwise.

use crate::kernels::elementwise::{fill_rows, gelu_erf_in_place};
use crate::kernels::epilogue::Epilogue;
use crate::kernels::sgemm::{matmul_into, MatRef, Threads};
use crate::kernels::{f32_tile, thread_count, Isa};

/// `dst = epilogue(x W)`, a Linear's f32 product: the contiguous `rows x k` activations `x` by
/// the row-major `k x n` transposed weight `w_t`, into `dst` (`rows x n`). On AVX-512 paths
/// slimbench's own tile kernel ([`crate::kernels::f32_tile`]) adds the epilogue as it stores;
/// elsewhere the `gemm` crate accumulates onto a buffer that already holds the bias and
/// residual, and GELU runs after. [`kernel_name`] says which.
pub fn linear(x: MatRef<'_>, w_t: &[f32], n: usize, dst: &mut [f32], epilogue: Epilogue<'_>) {
    if f32_tile::matmul(Isa::get(), x, w_t, n, dst, epilogue) {
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
    let w = MatRef::new(w_t, x.cols, n);
    matmul_into(dst, n, x, w, 1.0, true, Threads::Up(thread_count()));
    if epilogue.gelu {
        gelu_erf_in_place(dst);
    }
}

/// What runs the f32 Linears of slimbench's own CPU inference (text and language models) on the
/// path in use, as records name it (`technique_params.f32_kernel`): [`f32_tile`] on AVX-512, else
/// the `gemm` crate, which picks its own instructions (FMA where the CPU has it, whatever
/// `SLIMBENCH_KERNELS` says).
pub fn kernel_name() -> &'static str {
    if f32_tile::runs_on(Isa::get()) {
        return f32_tile::NAME;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        return "gemm-crate-fma";
    }
    "gemm-crate"
}
