//! slimbench's own f32 product for a Linear on AVX-512: tiles of 8 rows by 32 output channels
//! (16 accumulators of 16 lanes) over panels of the `n x k` weight, with the bias, residual and
//! GELU applied as each tile is stored. The `gemm` crate that candle uses compiles
//! its AVX-512 kernels only behind a feature whose choice cannot be narrowed at run time, so on
//! AVX-512 CPUs the f32 baseline ran 256-bit FMA at half the machine's width; elsewhere
//! ([`crate::kernels::sgemm`]) it still does what the CPU allows.
//!
//! Tasks are a chunk of rows by one panel of 32 channels (`panels.rs`), transposed into `k` rows
//! of 32 by the task. Products of up to four rows (a decode step, memory-bound) are dot products
//! instead ([`crate::kernels::f32_rows`]).

use half::f16;

use crate::kernels::epilogue::Epilogue;
use crate::kernels::isa::Isa;
use crate::kernels::panels::{by_tile_rows, run_tiles, run_tiles_into, TileSums, TILE_COLS};
use crate::kernels::qgemm::ONE_ROW_MAX_ROWS;
use crate::kernels::sgemm::MatRef;

/// The name records give this kernel (`technique_params.f32_kernel`, beside the one-row
/// kernel's).
pub const NAME: &str = "f32-tiles-avx512";

/// Whether the kernel runs on `isa` (the AVX-512 paths).
pub fn runs_on(isa: Isa) -> bool {
    cfg!(target_arch = "x86_64") && isa.avx512()
}

/// The weight operand of the tile kernel: `n` output channels over `k` inputs, in either order.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Weights<'a> {
    /// Channel `c`'s `k` inputs at `data[c * stride..]`: a Linear's `out x in` weight, or
    /// attention's keys (one head's columns of the fused QKV rows).
    Channels {
        /// The elements.
        data: &'a [f32],
        /// Elements between consecutive channels.
        stride: usize,
    },
    /// Input `p`'s `n` channels at `data[p * stride..]`: attention's values.
    Inputs {
        /// The elements.
        data: &'a [f32],
        /// Elements between consecutive inputs.
        stride: usize,
    },
    /// As [`Weights::Channels`] in f16, widened to f32 as each panel is packed: an f16 Linear.
    HalfChannels {
        /// The elements.
        data: &'a [f16],
        /// Elements between consecutive channels.
        stride: usize,
    },
}

/// [`matmul`] for an f16 `n x k` weight, widened to f32 exactly as each task packs its panel
/// (`vcvtph2ps`), so an f16 Linear of five rows or more runs at the f32 tiles' speed while
/// stored at two bytes a weight.
pub(crate) fn matmul_f16(
    isa: Isa,
    x: MatRef<'_>,
    w: &[f16],
    n: usize,
    dst: &mut [f32],
    epilogue: Epilogue<'_>,
) -> bool {
    let weights = Weights::HalfChannels {
        data: w,
        stride: x.cols,
    };
    linear_product(isa, x, weights, n, dst, epilogue)
}

/// The name records give an f16 Linear's tiles (`technique_params.f16_kernel`).
pub const F16_NAME: &str = "f16-tiles-avx512";

/// `dst = epilogue(x W^T)` for the contiguous `rows x k` activations `x` and the `n x k` weight
/// `w`, into `dst` (`rows x n`). Returns `false`, touching nothing, when `isa` is not an AVX-512
/// path or the product has at most four rows (memory-bound: the caller then uses
/// [`crate::kernels::f32_rows`]). Panics, like indexing, when a slice is shorter than its shape.
pub(crate) fn matmul(
    isa: Isa,
    x: MatRef<'_>,
    w: &[f32],
    n: usize,
    dst: &mut [f32],
    epilogue: Epilogue<'_>,
) -> bool {
    let weights = Weights::Channels {
        data: w,
        stride: x.cols,
    };
    linear_product(isa, x, weights, n, dst, epilogue)
}

/// A Linear's product of five rows or more on the tiles ([`matmul`], [`matmul_f16`]).
fn linear_product(
    isa: Isa,
    x: MatRef<'_>,
    weights: Weights<'_>,
    n: usize,
    dst: &mut [f32],
    epilogue: Epilogue<'_>,
) -> bool {
    let (rows, k) = (x.rows, x.cols);
    if !runs_on(isa) || rows <= ONE_ROW_MAX_ROWS {
        return false;
    }
    let (pack, tile) = operands(isa, x, weights, n, 1.0);
    run_tiles((rows, k, n), dst, epilogue, pack, tile);
    true
}

/// `dst = scale * x W^T` on the calling thread, for activations `x` whose rows may lie apart
/// (columns contiguous), the weight in either order, into rows `dst_stride` apart: attention's
/// products of one head (scores from queries and keys, context from scores and values). Returns
/// `false`, touching nothing, when `isa` is not an AVX-512 path.
///
/// # Safety
/// `dst` must be valid for writes of `x.rows` rows of `n` elements `dst_stride` apart, and no
/// other thread may touch them during the call.
pub(crate) unsafe fn product_into(
    isa: Isa,
    x: MatRef<'_>,
    weights: Weights<'_>,
    n: usize,
    scale: f32,
    dst: *mut f32,
    dst_stride: usize,
) -> bool {
    if !runs_on(isa) {
        return false;
    }
    let (pack, tile) = operands(isa, x, weights, n, scale);
    // SAFETY: the caller's promise.
    unsafe {
        run_tiles_into(
            (x.rows, n),
            dst,
            dst_stride,
            Epilogue::default(),
            false,
            pack,
            tile,
        )
    };
    true
}

/// The two halves of a product on the tiles: packing a panel of 32 channels into `k` rows of 32
/// (zero past `width`), so the tiles stream it in order, one 64-byte line for two broadcasts a
/// step; and one tile's sums, times `scale`. `isa` must be an AVX-512 path. Panics, like
/// indexing, when an operand is shorter than its shape.
#[allow(clippy::type_complexity)]
fn operands<'a>(
    isa: Isa,
    x: MatRef<'a>,
    weights: Weights<'a>,
    n: usize,
    scale: f32,
) -> (
    impl Fn(usize, usize) -> Vec<f32> + Sync + 'a,
    impl Fn(&Vec<f32>, usize, usize, &mut TileSums) + Sync + 'a,
) {
    assert!(runs_on(isa), "the f32 tiles run on AVX-512 paths only");
    let (rows, k, lda) = (x.rows, x.cols, x.row_stride);
    assert!(x.col_stride == 1, "activations with contiguous columns");
    assert!(
        rows == 0 || k == 0 || x.data.len() >= (rows - 1) * lda + k,
        "activations shape"
    );
    match weights {
        Weights::Channels { data, stride } => assert!(
            n == 0 || k == 0 || data.len() >= (n - 1) * stride + k,
            "weight shape"
        ),
        Weights::HalfChannels { data, stride } => assert!(
            n == 0 || k == 0 || data.len() >= (n - 1) * stride + k,
            "weight shape"
        ),
        Weights::Inputs { data, stride } => assert!(
            n == 0 || k == 0 || data.len() >= (k - 1) * stride + n,
            "weight shape"
        ),
    }
    let pack = move |col0: usize, width: usize| {
        let mut packed = vec![0f32; k * TILE_COLS];
        match weights {
            Weights::Channels { data, stride } => {
                pack_channels(data, stride, k, col0, width, &mut packed)
            }
            Weights::HalfChannels { data, stride } => {
                pack_channels(data, stride, k, col0, width, &mut packed)
            }
            Weights::Inputs { data, stride } => {
                for (p, dst) in packed.chunks_exact_mut(TILE_COLS).enumerate() {
                    dst[..width].copy_from_slice(&data[p * stride + col0..][..width]);
                }
            }
        }
        packed
    };
    let tile = move |packed: &Vec<f32>, row: usize, mr: usize, sums: &mut TileSums| {
        assert!(row + mr <= rows && packed.len() == k * TILE_COLS);
        let (a, b) = (x.data[row * lda..].as_ptr(), packed.as_ptr());
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` is an AVX-512 path (asserted above; an `Isa` is made by detection); `a`
        // holds `mr` rows of `k`, `lda` apart, and `b` `k` rows of 32 (asserted above).
        unsafe {
            by_tile_rows!(mr, tile_avx512(a, lda, k, b, scale, sums))
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (a, b, sums, isa, scale);
    };
    (pack, tile)
}

/// A weight element the f32 tiles pack: f32 as it is, f16 widened (exactly) as it is packed.
trait PanelElement: Copy {
    fn to_f32(self) -> f32;

    /// Packs 16 channels' first `k / 16 * 16` inputs as
    /// [`transpose_16_channels`](crate::kernels::x86::avx512::transpose_16_channels) does;
    /// returns how many inputs it packed.
    ///
    /// # Safety
    /// As for that function: AVX-512 F, `w` valid for 16 rows of `k` reads `stride` apart,
    /// `dst` for writes of `k` rows of 32.
    #[cfg(target_arch = "x86_64")]
    unsafe fn transpose_16(w: *const Self, stride: usize, k: usize, dst: *mut f32) -> usize;
}

impl PanelElement for f32 {
    fn to_f32(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn transpose_16(w: *const f32, stride: usize, k: usize, dst: *mut f32) -> usize {
        // SAFETY: the caller's promise, passed on.
        unsafe { crate::kernels::x86::avx512::transpose_16_channels(w, stride, k, dst) }
    }
}

impl PanelElement for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn transpose_16(w: *const f16, stride: usize, k: usize, dst: *mut f32) -> usize {
        // SAFETY: the caller's promise, passed on; f16 values are read as their bits.
        unsafe { crate::kernels::x86::avx512::transpose_16_channels_f16(w.cast(), stride, k, dst) }
    }
}

/// Transposes channels `col0..col0 + width` (each `k` inputs, `stride` apart in `w`) into
/// `packed`'s `k` rows of 32, as f32: 16 x 16 blocks in registers, the ragged rest one at a time.
fn pack_channels<T: PanelElement>(
    w: &[T],
    stride: usize,
    k: usize,
    col0: usize,
    width: usize,
    packed: &mut [f32],
) {
    for half in 0..TILE_COLS / 16 {
        let (c0, c1) = (16 * half, width.min(16 * (half + 1)));
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if c1 - c0.min(c1) == 16 {
            let channels = &w[(col0 + c0) * stride..(col0 + c0 + 15) * stride + k];
            // SAFETY: the callers run on AVX-512 paths only (`operands` asserts it); `channels`
            // holds 16 rows of `k`, `stride` apart, and the panel `k` rows of 32 from column
            // `c0 <= 16`.
            done =
                unsafe { T::transpose_16(channels.as_ptr(), stride, k, packed[c0..].as_mut_ptr()) };
        }
        for c in (c0..c1).filter(|_| done < k) {
            let channel = &w[(col0 + c) * stride + done..(col0 + c) * stride + k];
            let column = packed[done * TILE_COLS + c..].iter_mut().step_by(TILE_COLS);
            for (dst, v) in column.zip(channel) {
                *dst = v.to_f32();
            }
        }
    }
}

/// The sums of `MR` rows (`a`, `k` inputs each, `lda` apart) against a packed panel (`b`: `k`
/// rows of 32), times `scale`, into `out`'s first `MR` rows.
///
/// # Safety
/// AVX-512 F; `a` valid for `MR` rows of `k` reads `lda` apart, `b` for `k * 32` reads.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const MR: usize>(
    a: *const f32,
    lda: usize,
    k: usize,
    b: *const f32,
    scale: f32,
    out: &mut TileSums,
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
                let x = _mm512_set1_ps(*a.add(i * lda + p));
                acc[0] = _mm512_fmadd_ps(x, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(x, b1, acc[1]);
            }
        }
        if scale != 1.0 {
            let scale = _mm512_set1_ps(scale);
            for acc in acc.iter_mut().flatten() {
                *acc = _mm512_mul_ps(*acc, scale);
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

    use crate::kernels::panels::{assert_matches_straightforward, test_values as random};

    /// The tile kernel against the straightforward product of a `rows x k` by `n x k` weight.
    fn check(isa: Isa, (rows, k, n): (usize, usize, usize), tolerance: f64) {
        let w = random(n * k, 2);
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
        assert_matches_straightforward((rows, k, n), |v| v as f64, weight, product, tolerance);
    }

    /// [`matmul_f16`] against the straightforward product with the f16 weight's values.
    fn check_f16(isa: Isa, (rows, k, n): (usize, usize, usize)) {
        let w: Vec<f16> = random(n * k, 4).into_iter().map(f16::from_f32).collect();
        let product = |x: &[f32], dst: &mut [f32]| {
            matmul_f16(
                isa,
                MatRef::new(x, rows, k),
                &w,
                n,
                dst,
                Epilogue::default(),
            )
        };
        let weight = |p: usize, c: usize| w[c * k + p].to_f64();
        assert_matches_straightforward((rows, k, n), |v| v as f64, weight, product, 1e-4);
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
            check(isa, (rows, k, n), 1e-4);
        }

        #[test]
        fn f16_tiles_match_the_straightforward_product(
            rows in 5usize..40, k in 1usize..70, n in 1usize..80,
        ) {
            let Some(isa) = avx512() else { return Ok(()) };
            check_f16(isa, (rows, k, n));
        }
    }

    #[test]
    fn f16_products_of_minilm_shapes_match_over_threads() {
        let Some(isa) = avx512() else { return };
        check_f16(isa, (128, 384, 1536));
        check_f16(isa, (130, 1536, 385));
    }

    #[test]
    fn products_of_up_to_four_rows_are_left_to_the_row_kernel() {
        let Some(isa) = avx512() else { return };
        let x = [1.0f32; 8];
        let mut dst = [7.0f32; 8];
        assert!(!matmul(
            isa,
            MatRef::new(&x, 4, 2),
            &x,
            2,
            &mut dst,
            Epilogue::default()
        ));
        assert_eq!(dst, [7.0; 8]);
    }

    #[test]
    fn products_over_many_tasks_and_threads_match() {
        let Some(isa) = avx512() else { return };
        // 200 rows (three tasks of rows, a tail of 8), 300 channels (a tail of 12), a
        // MiniLM-wide input: the threaded path.
        check(isa, (200, 384, 300), 1e-4);
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
                    assert!(matmul(isa, MatRef::new(x, rows, k), &w, n, dst, e));
                },
            );
        }
    }

    #[test]
    fn strided_products_in_either_weight_order_match_attention_shapes() {
        let Some(isa) = avx512() else { return };
        // One head of attention in a fused row of 3 x 40 (queries, keys, values of 8 heads of 5,
        // and ragged sizes): 37 tokens, head width 21, scores scaled, context into a wider row.
        let (t, hd, stride, out_stride) = (37, 21, 120, 50);
        let qkv = random(t * stride, 7);
        let (q, keys, values) = (&qkv[3..], &qkv[43..], &qkv[83..]);
        let x = MatRef {
            data: q,
            rows: t,
            cols: hd,
            row_stride: stride,
            col_stride: 1,
        };
        let scale = 0.25;
        let mut scores = vec![f32::NAN; t * t];
        let keys_in = Weights::Channels { data: keys, stride };
        // SAFETY: `scores` holds `t x t`.
        assert!(unsafe { product_into(isa, x, keys_in, t, scale, scores.as_mut_ptr(), t) });
        for i in 0..t {
            for j in 0..t {
                let want: f64 = (0..hd)
                    .map(|p| q[i * stride + p] as f64 * keys[j * stride + p] as f64)
                    .sum::<f64>()
                    * scale as f64;
                assert!(
                    (scores[i * t + j] as f64 - want).abs() < 1e-4,
                    "score {i}, {j}"
                );
            }
        }
        let mut context = vec![9.0f32; t * out_stride];
        let probabilities = MatRef::new(&scores, t, t);
        let values_in = Weights::Inputs {
            data: values,
            stride,
        };
        // SAFETY: `context` holds `t` rows of `hd` columns `out_stride` apart.
        let ran = unsafe {
            product_into(
                isa,
                probabilities,
                values_in,
                hd,
                1.0,
                context.as_mut_ptr(),
                out_stride,
            )
        };
        assert!(ran);
        for i in 0..t {
            for c in 0..out_stride {
                let got = context[i * out_stride + c] as f64;
                if c >= hd {
                    assert_eq!(got, 9.0, "columns past the head untouched");
                    continue;
                }
                let want: f64 = (0..t)
                    .map(|p| scores[i * t + p] as f64 * values[p * stride + c] as f64)
                    .sum();
                assert!(
                    (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "context {i}, {c}"
                );
            }
        }
    }

    #[test]
    fn other_paths_are_declined_untouched() {
        let x = [1.0f32; 4];
        let mut dst = [7.0f32; 4];
        let view = MatRef::new(&x, 2, 2);
        assert!(!matmul(
            Isa::portable(),
            view,
            &x,
            2,
            &mut dst,
            Epilogue::default()
        ));
        assert_eq!(dst, [7.0; 4]);
    }
}
