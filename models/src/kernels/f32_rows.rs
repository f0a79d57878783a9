//! f32 products of one to four rows (a decode step's Linears) by an `out x in` weight: dot
//! products that read each channel's inputs contiguously, so the weight streams from memory once
//! for all rows, in equal contiguous ranges of channels a thread. On a Zen 5 VM this streams
//! SmolLM2's f32 weights at about 40 GB/s, where the `gemm` crate's one-row product over the
//! transposed weight reached 25-28 (a stand-alone sweep of every decode-step shape, 2 threads).
//! AVX-512 (16 inputs a step, four rows of four channels), AVX2 + FMA (8 a step, two rows of four
//! channels) and a portable path the compiler vectorises, picked by [`Isa`].

use rayon::prelude::*;

use crate::kernels::epilogue::Epilogue;
use crate::kernels::isa::Isa;
use crate::kernels::portable::dots_f32_portable;
use crate::kernels::qgemm::{worth_threads, ONE_ROW_MAX_ROWS};
use crate::kernels::sgemm::MatRef;
use crate::kernels::thread_count;

/// Output channels of one block of dot products.
const BLOCK: usize = 4;
/// Tasks a thread gets: a few, so one thread held up by the VM does not hold up the product.
const TASKS_PER_THREAD: usize = 4;

/// The name records give this kernel on `isa`'s path (`f32-rows-avx512`, ...).
pub fn name(isa: Isa) -> &'static str {
    if isa.avx512() {
        "f32-rows-avx512"
    } else if isa.avx2_fma() {
        "f32-rows-avx2"
    } else {
        "f32-rows-portable"
    }
}

/// `dst = epilogue(x W^T)` for the contiguous `rows x k` activations `x` and the `n x k` weight
/// `w`, into `dst` (`rows x n`), on `isa`'s path. Returns `false`, touching nothing, when the
/// product has more than [`ONE_ROW_MAX_ROWS`] rows (then it is compute-bound: tiles). Panics,
/// like indexing, when a slice is shorter than its shape.
pub(crate) fn matmul(
    isa: Isa,
    x: MatRef<'_>,
    w: &[f32],
    n: usize,
    dst: &mut [f32],
    epilogue: Epilogue<'_>,
) -> bool {
    let (rows, k) = (x.rows, x.cols);
    if rows > ONE_ROW_MAX_ROWS {
        return false;
    }
    assert!(
        x.row_stride == k && x.col_stride == 1,
        "contiguous activations"
    );
    assert!(x.data.len() >= rows * k, "activations shape");
    assert!(w.len() >= n * k, "weight shape");
    assert_eq!(dst.len(), rows * n, "output shape");
    epilogue.check(rows, n);
    if rows == 0 || n == 0 {
        return true;
    }
    let threads = if worth_threads(rows, k, n) {
        thread_count()
    } else {
        1
    };
    let task_channels = n
        .div_ceil(threads * TASKS_PER_THREAD)
        .next_multiple_of(BLOCK);
    let dst_addr = dst.as_mut_ptr() as usize;
    let run_task = |task: usize| {
        let end = ((task + 1) * task_channels).min(n);
        let mut c0 = task * task_channels;
        while c0 < end {
            let width = BLOCK.min(end - c0);
            let mut sums = [[0f32; BLOCK]; ONE_ROW_MAX_ROWS];
            block(
                isa,
                &x.data[..rows * k],
                rows,
                &w[c0 * k..(c0 + width) * k],
                width,
                k,
                &mut sums,
            );
            // SAFETY: rows `0..rows`, channels `c0..c0 + width` lie in `dst` (`rows x n`,
            // asserted above) and only this task writes them.
            unsafe { epilogue.store(&sums[..rows], dst_addr as *mut f32, 0, c0, width, n) };
            c0 += width;
        }
    };
    let tasks = n.div_ceil(task_channels);
    if threads > 1 && tasks > 1 {
        (0..tasks).into_par_iter().for_each(run_task);
    } else {
        (0..tasks).for_each(run_task);
    }
    true
}

/// The dot products of `rows` rows of `x` with the `width <= 4` channels of `w`, into
/// `sums[row][channel]`.
fn block(
    isa: Isa,
    x: &[f32],
    rows: usize,
    w: &[f32],
    width: usize,
    k: usize,
    sums: &mut [[f32; BLOCK]; ONE_ROW_MAX_ROWS],
) {
    if width < BLOCK {
        // The last few channels of a product whose width is not a multiple of four.
        for (c, w) in w.chunks_exact(k).enumerate() {
            for (r, x) in x.chunks_exact(k).enumerate() {
                let mut one = [[0f32; 1]; 1];
                channel_block(isa, x, w, k, &mut one);
                sums[r][c] = one[0][0];
            }
        }
        return;
    }
    match rows {
        1 => rows_block::<1>(isa, x, w, k, sums),
        2 => rows_block::<2>(isa, x, w, k, sums),
        3 => rows_block::<3>(isa, x, w, k, sums),
        _ => rows_block::<4>(isa, x, w, k, sums),
    }
}

/// [`block`] for `R` rows of four channels.
fn rows_block<const R: usize>(
    isa: Isa,
    x: &[f32],
    w: &[f32],
    k: usize,
    sums: &mut [[f32; BLOCK]; ONE_ROW_MAX_ROWS],
) {
    if !isa.avx512() && isa.avx2_fma() && R > 2 {
        // AVX2's 16 registers hold two rows of four channels' sums: rows in pairs.
        for (pair, x) in x.chunks(2 * k).enumerate() {
            let rows = x.len() / k;
            let out = &mut sums[2 * pair..];
            if rows == 2 {
                let mut two = [[0f32; BLOCK]; 2];
                channel_block(isa, x, w, k, &mut two);
                out[..2].copy_from_slice(&two);
            } else {
                let mut one = [[0f32; BLOCK]; 1];
                channel_block(isa, x, w, k, &mut one);
                out[0] = one[0];
            }
        }
        return;
    }
    let mut out = [[0f32; BLOCK]; R];
    channel_block(isa, x, w, k, &mut out);
    sums[..R].copy_from_slice(&out);
}

/// The `R x C` dot products of `x` (`R` rows of `k`) and `w` (`C` channels of `k`) on `isa`'s
/// path.
fn channel_block<const R: usize, const C: usize>(
    isa: Isa,
    x: &[f32],
    w: &[f32],
    k: usize,
    out: &mut [[f32; C]; R],
) {
    assert!(x.len() >= R * k && w.len() >= C * k, "dot product operands");
    #[cfg(target_arch = "x86_64")]
    {
        use crate::kernels::x86::{avx2, avx512};
        if isa.avx512() {
            // SAFETY: the path is AVX-512 (an `Isa` is made by detection); the operands hold
            // `R` and `C` rows of `k` (asserted above).
            return unsafe { avx512::dots_f32(x.as_ptr(), w.as_ptr(), k, out) };
        }
        if isa.avx2_fma() {
            // SAFETY: as above, for AVX2 and FMA.
            return unsafe { avx2::dots_f32(x.as_ptr(), w.as_ptr(), k, out) };
        }
    }
    let _ = isa;
    dots_f32_portable(x, w, k, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::kernels::panels::{assert_matches_straightforward, test_values as random};

    /// The kernel on `isa` against the straightforward product of `rows x k` by `n x k`.
    fn check(isa: Isa, (rows, k, n): (usize, usize, usize)) {
        let w = random(n * k, 3);
        let product = |x: &[f32], dst: &mut [f32]| {
            matmul(
                isa,
                MatRef::new(x, rows, k),
                &w,
                n,
                dst,
                Epilogue::default(),
            )
        };
        let weight = |p: usize, c: usize| w[c * k + p] as f64;
        assert_matches_straightforward((rows, k, n), |v| v as f64, weight, product, 1e-4);
    }

    proptest! {
        #[test]
        fn every_path_matches_the_straightforward_product(
            rows in 1usize..=4, k in 1usize..70, n in 1usize..40,
        ) {
            for isa in Isa::available() {
                check(isa, (rows, k, n));
            }
        }
    }

    #[test]
    fn threaded_products_of_decode_shapes_match_on_every_path() {
        // SmolLM2's down projection (1536 inputs, ragged on no path) and a width that leaves a
        // tail of channels (577), on the thread pool.
        for isa in Isa::available() {
            for rows in 1..=4 {
                check(isa, (rows, 1536, 577));
                check(isa, (rows, 573, 130));
            }
        }
    }

    #[test]
    fn the_epilogue_is_fused_on_every_path() {
        let (k, n) = (37, 45);
        let w = random(n * k, 5);
        for isa in Isa::available() {
            for rows in 1..=4 {
                crate::kernels::epilogue::assert_fused_epilogue(
                    rows,
                    k,
                    n,
                    random,
                    |x, rows, dst, e| {
                        assert!(matmul(isa, MatRef::new(x, rows, k), &w, n, dst, e));
                    },
                );
            }
        }
    }

    #[test]
    fn products_of_more_rows_are_declined_untouched() {
        let x = [1.0f32; 10];
        let mut dst = [7.0f32; 10];
        assert!(!matmul(
            Isa::get(),
            MatRef::new(&x, 5, 2),
            &x,
            2,
            &mut dst,
            Epilogue::default()
        ));
        assert_eq!(dst, [7.0; 10]);
    }
}
