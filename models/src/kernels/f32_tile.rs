//! slimbench's own f32 product for a Linear on AVX-512: tiles of 8 rows by 32 output channels
//! (16 accumulators of 16 lanes) reading the `k x n` transposed weight in place, with the bias,
//! residual and GELU applied as each tile is stored. The `gemm` crate that candle uses compiles
//! its AVX-512 kernels only behind a feature whose choice cannot be narrowed at run time, so on
//! AVX-512 CPUs the f32 baseline ran 256-bit FMA at half the machine's width; elsewhere
//! ([`crate::kernels::sgemm`]) it still does what the CPU allows.
//!
//! Tasks are a block of 96 rows by one panel of 32 channels, packed
//! contiguous by the task. Products of up to four rows (a decode step, memory-bound) stay with
//! the `gemm` crate, which streams the weight faster than the kernels tried here.

use rayon::prelude::*;

use crate::kernels::epilogue::Epilogue;
use crate::kernels::isa::Isa;
use crate::kernels::qgemm::{worth_threads, ONE_ROW_MAX_ROWS};

/// Output channels of one panel (two 16-lane vectors).
pub(crate) const TILE_COLS: usize = 32;
/// Rows of one tile: 8 x 2 accumulators, two weight vectors and a broadcast fit the 32 vector
/// registers of AVX-512.
pub(crate) const TILE_ROWS: usize = 8;
/// Rows one task covers: its activations stay in the core's L2 cache while it walks a panel.
pub(crate) const TASK_ROWS: usize = 12 * TILE_ROWS;

/// The name records give this kernel (`technique_params.f32_kernel`): slimbench's AVX-512 tiles
/// for products of more than four rows, the `gemm` crate's FMA path for up to four.
pub const NAME: &str = "f32-avx512+gemm-fma-one-row";

/// Whether the kernel runs on `isa` (the AVX-512 paths).
pub fn runs_on(isa: Isa) -> bool {
    cfg!(target_arch = "x86_64") && isa.avx512()
}

/// What runs the f32 Linears of slimbench's own CPU inference (text and language models) on the
/// path in use, as records name it (`technique_params.f32_kernel`): this kernel on AVX-512, else
/// the `gemm` crate, which picks its own instructions (FMA where the CPU has it, whatever
/// `SLIMBENCH_KERNELS` says).
pub fn linear_kernel_name() -> &'static str {
    if runs_on(Isa::get()) {
        return NAME;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        return "gemm-crate-fma";
    }
    "gemm-crate"
}

/// `dst = epilogue(x W)` for `rows` rows of `x` (`rows x k`) and the row-major `k x n` weight
/// `w_t`, into `dst` (`rows x n`). Returns `false`, touching nothing, when `isa` is not an
/// AVX-512 path or the product has at most [`ONE_ROW_MAX_ROWS`] rows (the caller then uses the
/// `gemm` crate, whose one-row product streams the weight at 29 GB/s of the 32.5 this Zen 5 VM
/// reads, where two kernels of slimbench's own reached 20-25). Panics, like indexing, when a slice is
/// shorter than its shape.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    isa: Isa,
    x: &[f32],
    rows: usize,
    k: usize,
    w_t: &[f32],
    n: usize,
    dst: &mut [f32],
    epilogue: Epilogue<'_>,
) -> bool {
    if !runs_on(isa) || rows <= ONE_ROW_MAX_ROWS {
        return false;
    }
    assert!(x.len() >= rows * k, "activations shape");
    assert!(w_t.len() >= k * n, "weight shape");
    assert_eq!(dst.len(), rows * n, "output shape");
    epilogue.check(rows, n);
    if rows == 0 || n == 0 {
        return true;
    }
    let panels = n.div_ceil(TILE_COLS);
    // Chunks of equal rows, in whole tiles (MiniLM's 128 tokens: two of 64, not 96 and 32).
    let chunks = rows.div_ceil(TASK_ROWS);
    let chunk_rows = rows.div_ceil(chunks).next_multiple_of(TILE_ROWS);
    let chunks = rows.div_ceil(chunk_rows);
    let dst_addr = dst.as_mut_ptr() as usize;
    let run_task = |task: usize| {
        let (chunk, panel) = (task / panels, task % panels);
        let col0 = panel * TILE_COLS;
        let width = TILE_COLS.min(n - col0);
        let row_end = ((chunk + 1) * chunk_rows).min(rows);
        let mut row = chunk * chunk_rows;
        // The panel's columns, contiguous (`k` rows of 32, zero past `width`): the tiles then
        // stream them in order instead of two cache lines `n` floats apart a step.
        let mut packed = vec![0f32; k * TILE_COLS];
        if row < row_end {
            for (p, dst) in packed.chunks_exact_mut(TILE_COLS).enumerate() {
                dst[..width].copy_from_slice(&w_t[p * n + col0..p * n + col0 + width]);
            }
        }
        while row < row_end {
            let mr = (row_end - row).min(TILE_ROWS);
            let mut out = [[0f32; TILE_COLS]; TILE_ROWS];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa` is an AVX-512 path (checked above; an `Isa` is made by detection);
            // rows `row..row + mr` of `x` lie inside it (asserted above) and `packed` holds `k`
            // rows of 32.
            unsafe {
                tile(x, row, mr, k, &packed, &mut out)
            };
            // SAFETY: the tile's rows and columns lie in `dst` and no other task writes them.
            unsafe { epilogue.store(&out[..mr], dst_addr as *mut f32, row, col0, width, n) };
            row += mr;
        }
    };
    let tasks = chunks * panels;
    if worth_threads(rows, k, n) && tasks > 1 {
        (0..tasks).into_par_iter().for_each(run_task);
    } else {
        (0..tasks).for_each(run_task);
    }
    true
}

/// Dispatches a tile of `mr <= 8` rows to the kernel compiled for that many.
///
/// # Safety
/// The CPU must have AVX-512 F; rows `row..row + mr` of `x` (`k` wide) must lie inside it and
/// `packed` must hold `k` rows of 32.
#[cfg(target_arch = "x86_64")]
unsafe fn tile(
    x: &[f32],
    row: usize,
    mr: usize,
    k: usize,
    packed: &[f32],
    out: &mut [[f32; TILE_COLS]; TILE_ROWS],
) {
    debug_assert!(packed.len() >= k * TILE_COLS && x.len() >= (row + mr) * k);
    let a = x[row * k..].as_ptr();
    let b = packed.as_ptr();
    // SAFETY: the caller's promise.
    unsafe {
        match mr {
            8 => tile_avx512::<8>(a, k, b, out),
            7 => tile_avx512::<7>(a, k, b, out),
            6 => tile_avx512::<6>(a, k, b, out),
            5 => tile_avx512::<5>(a, k, b, out),
            4 => tile_avx512::<4>(a, k, b, out),
            3 => tile_avx512::<3>(a, k, b, out),
            2 => tile_avx512::<2>(a, k, b, out),
            _ => tile_avx512::<1>(a, k, b, out),
        }
    }
}

/// The sums of `MR` rows (`a`, `k` apart) against a packed panel (`b`: `k` rows of 32), into
/// `out`'s first `MR` rows.
///
/// # Safety
/// AVX-512 F; `a` valid for `MR` rows of `k` reads, `b` for `k * 32` reads.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const MR: usize>(
    a: *const f32,
    k: usize,
    b: *const f32,
    out: &mut [[f32; TILE_COLS]; TILE_ROWS],
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    // SAFETY: every read lies in the rows and the panel the caller vouches for.
    unsafe {
        for p in 0..k {
            let row = b.add(p * TILE_COLS);
            let b0 = _mm512_loadu_ps(row);
            let b1 = _mm512_loadu_ps(row.add(16));
            for (i, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*a.add(i * k + p));
                acc[0] = _mm512_fmadd_ps(x, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(x, b1, acc[1]);
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(out[i].as_mut_ptr(), acc[0]);
            _mm512_storeu_ps(out[i].as_mut_ptr().add(16), acc[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let v = (i as u64 * 2654435761 + seed * 97) % 1000;
                v as f32 / 500.0 - 1.0
            })
            .collect()
    }

    fn straightforward(x: &[f32], rows: usize, k: usize, w_t: &[f32], n: usize) -> Vec<f64> {
        let mut out = vec![0.0; rows * n];
        for r in 0..rows {
            for c in 0..n {
                out[r * n + c] = (0..k)
                    .map(|p| x[r * k + p] as f64 * w_t[p * n + c] as f64)
                    .sum();
            }
        }
        out
    }

    fn avx512() -> Option<Isa> {
        let isa = Isa::available().into_iter().find(|i| runs_on(*i));
        if isa.is_none() {
            eprintln!("skipped: this CPU has no AVX-512, the f32 tile kernel does not run here");
        }
        isa
    }

    proptest! {
        #[test]
        fn tiles_match_the_straightforward_product(
            rows in 5usize..40, k in 1usize..70, n in 1usize..80,
        ) {
            let Some(isa) = avx512() else { return Ok(()) };
            let x = random(rows * k, 1);
            let w = random(k * n, 2);
            let mut dst = vec![f32::NAN; rows * n];
            prop_assert!(matmul(isa, &x, rows, k, &w, n, &mut dst, Epilogue::default()));
            let want = straightforward(&x, rows, k, &w, n);
            for (d, w) in dst.iter().zip(&want) {
                prop_assert!((*d as f64 - w).abs() < 1e-4 * (1.0 + w.abs()), "{d} vs {w}");
            }
        }
    }

    #[test]
    fn products_of_up_to_four_rows_are_left_to_the_gemm_crate() {
        let Some(isa) = avx512() else { return };
        let x = [1.0f32; 8];
        let mut dst = [7.0f32; 8];
        assert!(!matmul(isa, &x, 4, 2, &x, 2, &mut dst, Epilogue::default()));
        assert_eq!(dst, [7.0; 8]);
    }

    #[test]
    fn products_over_many_tasks_and_threads_match() {
        let Some(isa) = avx512() else { return };
        // 200 rows (three tasks of rows, a tail of 8), 300 channels (a tail of 12), a
        // MiniLM-wide input: the threaded path.
        let (rows, k, n) = (200, 384, 300);
        let x = random(rows * k, 3);
        let w = random(k * n, 4);
        let mut dst = vec![0f32; rows * n];
        assert!(matmul(
            isa,
            &x,
            rows,
            k,
            &w,
            n,
            &mut dst,
            Epilogue::default()
        ));
        let want = straightforward(&x, rows, k, &w, n);
        for (d, w) in dst.iter().zip(&want) {
            assert!((*d as f64 - w).abs() < 1e-3, "{d} vs {w}");
        }
    }

    #[test]
    fn the_epilogue_is_fused() {
        let Some(isa) = avx512() else { return };
        let (k, n) = (37, 45);
        let w = random(k * n, 5);
        for rows in [13, 5] {
            crate::kernels::epilogue::assert_fused_epilogue(
                rows,
                k,
                n,
                random,
                |x, rows, dst, e| {
                    assert!(matmul(isa, x, rows, k, &w, n, dst, e));
                },
            );
        }
    }

    #[test]
    fn other_paths_are_declined_untouched() {
        let x = [1.0f32; 4];
        let mut dst = [7.0f32; 4];
        assert!(!matmul(
            Isa::portable(),
            &x,
            2,
            2,
            &x,
            2,
            &mut dst,
            Epilogue::default()
        ));
        assert_eq!(dst, [7.0; 4]);
    }
}
