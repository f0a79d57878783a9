//! slimbench's own f32 product for a Linear: tiles of 8 rows by 32 output channels over panels
//! of the `n x k` weight, with the bias, residual and GELU applied as each tile is stored.
//! AVX-512 holds a tile in 16 accumulators of 16 lanes; AVX2, with 16 registers, sums it four rows
//! by 16 channels at a time (8 accumulators of 8 lanes).
//!
//! Which weights run here: f32 on AVX-512, where the `gemm` crate that candle uses would run
//! 256-bit FMA (it compiles its AVX-512 kernels only behind a feature whose choice cannot be
//! narrowed at run time); f32 on AVX2 runs dot tiles that pack nothing instead
//! ([`crate::kernels::f32_dots`]: these tiles, packing each panel, were no faster there than the
//! `gemm` crate, which packs too).
//! f16 and bf16 on every path with AVX2, each task widening its panel to f32 as it packs it
//! (exactly), where candle widened the whole weight every product (bf16 on a CPU with
//! AVX512_BF16 runs `vdpbf16ps` instead, [`crate::kernels::bf16_tile`]).
//!
//! Tasks are a chunk of rows by one panel of 32 channels (`panels.rs`), transposed into `k` rows
//! of 32 by the task. Products of up to four rows (a decode step, memory-bound) are dot products
//! instead ([`crate::kernels::f32_rows`]).

use half::{bf16, f16};

use crate::kernels::epilogue::Epilogue;
use crate::kernels::isa::Isa;
use crate::kernels::panels::{by_tile_rows, run_tiles, run_tiles_into, TileSums, TILE_COLS};
use crate::kernels::qgemm::ONE_ROW_MAX_ROWS;
use crate::kernels::sgemm::MatRef;

/// The name records give this kernel on `isa` for a weight of `precision` (`f32`, `f16`,
/// `bf16`), beside the one-row kernel's (`technique_params.f32_kernel`, `f16_kernel`,
/// `bf16_kernel`): `f32-tiles-avx512`, `bf16-tiles-avx2`, ...
pub fn name(isa: Isa, precision: &str) -> String {
    let width = if isa.avx512() { "avx512" } else { "avx2" };
    format!("{precision}-tiles-{width}")
}

/// Whether f32 weights (and attention's products) run on the tiles on `isa`: the AVX-512 paths.
pub fn runs_on(isa: Isa) -> bool {
    cfg!(target_arch = "x86_64") && isa.avx512()
}

/// Whether f16 and bf16 weights run on the tiles on `isa`, widened as each panel is packed: the
/// AVX-512 paths and every path with AVX2, FMA and F16C.
pub fn runs_half_on(isa: Isa) -> bool {
    cfg!(target_arch = "x86_64") && isa.avx2_fma()
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
    /// As [`Weights::Channels`] in bf16, widened to f32 as each panel is packed: a bf16 Linear
    /// where `vdpbf16ps` is not at hand ([`crate::kernels::bf16_tile`] runs it where it is).
    Bf16Channels {
        /// The elements.
        data: &'a [bf16],
        /// Elements between consecutive channels.
        stride: usize,
    },
}

impl Weights<'_> {
    /// Whether the tiles run this weight on `isa` ([`runs_on`], [`runs_half_on`]).
    fn runs_on(self, isa: Isa) -> bool {
        match self {
            Weights::Channels { .. } | Weights::Inputs { .. } => runs_on(isa),
            Weights::HalfChannels { .. } | Weights::Bf16Channels { .. } => runs_half_on(isa),
        }
    }
}

/// `dst = epilogue(x W^T)` for the contiguous `rows x k` activations `x` and the `n x k` weight
/// `w`, into `dst` (`rows x n`): f32, or f16 or bf16 widened to f32 exactly as each task packs its
/// panel (`vcvtph2ps`, a 16-bit shift), so a half-precision Linear runs at the f32 tiles' speed
/// while stored at two bytes a weight. Returns `false`, touching nothing, when the tiles do not
/// run `w`'s precision on `isa` ([`runs_on`], [`runs_half_on`]) or the product has at most four
/// rows (memory-bound: the caller then uses [`crate::kernels::f32_rows`]). Panics, like indexing,
/// when a slice is shorter than its shape.
pub(crate) fn matmul<T: PanelElement>(
    isa: Isa,
    x: MatRef<'_>,
    w: &[T],
    n: usize,
    dst: &mut [f32],
    epilogue: Epilogue<'_>,
) -> bool {
    let (rows, k) = (x.rows, x.cols);
    let weights = T::channels(w, k);
    if !weights.runs_on(isa) || rows <= ONE_ROW_MAX_ROWS {
        return false;
    }
    let (pack, tile) = operands(isa, x, weights, n, 1.0);
    run_tiles((rows, k, n), dst, epilogue, pack, tile);
    true
}

/// `dst = scale * x W^T` on the calling thread, for activations `x` whose rows may lie apart
/// (columns contiguous), the weight in either order, into rows `dst_stride` apart: attention's
/// products of one head (scores from queries and keys, context from scores and values). Returns
/// `false`, touching nothing, when the tiles do not run `weights` on `isa`.
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
    if !weights.runs_on(isa) {
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
/// step; and one tile's sums, times `scale`. `isa` must be a path the tiles run on. Panics, like
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
    assert!(
        weights.runs_on(isa),
        "a weight the tiles do not run on this path"
    );
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
        Weights::Bf16Channels { data, stride } => assert!(
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
                pack_channels(isa, data, stride, k, col0, width, &mut packed)
            }
            Weights::HalfChannels { data, stride } => {
                pack_channels(isa, data, stride, k, col0, width, &mut packed)
            }
            Weights::Bf16Channels { data, stride } => {
                pack_channels(isa, data, stride, k, col0, width, &mut packed)
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
        // SAFETY: `isa` is an AVX-512 path, or else one with AVX2 and FMA (asserted above; an
        // `Isa` is made by detection); `a` holds `mr` rows of `k`, `lda` apart, and `b` `k` rows
        // of 32 (asserted above).
        unsafe {
            if isa.avx512() {
                by_tile_rows!(mr, tile_avx512(a, lda, k, b, scale, sums))
            } else {
                use crate::kernels::x86::avx2::f32_tile;
                by_tile_rows!(mr, f32_tile(a, lda, k, b, scale, sums))
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (a, b, sums, isa, scale);
    };
    (pack, tile)
}

/// A weight element the f32 tiles take: f32 as it is, f16 and bf16 widened (exactly) as they
/// are packed.
pub(crate) trait PanelElement: Copy + Sync {
    /// The `out x in` weight `data`, channels `stride` apart, as the tiles' operand.
    fn channels(data: &[Self], stride: usize) -> Weights<'_>;

    /// The value as f32.
    fn to_f32(self) -> f32;

    /// Packs 16 channels' first `k / 16 * 16` inputs (AVX-512) or 8 channels' first `k / 8 * 8`
    /// (AVX2) as [`transpose_16_channels`](crate::kernels::x86::avx512::transpose_16_channels)
    /// and [`transpose_8_channels`](crate::kernels::x86::avx2::transpose_8_channels) do; returns
    /// how many inputs it packed.
    ///
    /// # Safety
    /// As for those functions: AVX-512 F, BW and VL if `wide`, else AVX2, FMA and F16C; `w`
    /// valid for 16 (`wide`) or 8 rows of `k` reads `stride` apart, `dst` for writes of `k` rows
    /// of 32.
    #[cfg(target_arch = "x86_64")]
    unsafe fn transpose(
        wide: bool,
        w: *const Self,
        stride: usize,
        k: usize,
        dst: *mut f32,
    ) -> usize;
}

impl PanelElement for f32 {
    fn channels(data: &[f32], stride: usize) -> Weights<'_> {
        Weights::Channels { data, stride }
    }

    fn to_f32(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn transpose(
        wide: bool,
        w: *const f32,
        stride: usize,
        k: usize,
        dst: *mut f32,
    ) -> usize {
        if !wide {
            // f32 runs on the tiles on AVX-512 paths only (`runs_on`); packed one at a time.
            return 0;
        }
        // SAFETY: the caller's promise, passed on.
        unsafe { crate::kernels::x86::avx512::transpose_16_channels(w, stride, k, dst) }
    }
}

/// [`PanelElement::transpose`] for the bits of a half-precision weight (f16 if `!BF16`).
///
/// # Safety
/// As for that function.
#[cfg(target_arch = "x86_64")]
unsafe fn transpose_half<const BF16: bool>(
    wide: bool,
    w: *const u16,
    stride: usize,
    k: usize,
    dst: *mut f32,
) -> usize {
    use crate::kernels::x86::{avx2, avx512};
    // SAFETY: the caller's promise, passed on.
    unsafe {
        if wide {
            avx512::transpose_16_channels_half::<BF16>(w, stride, k, dst)
        } else {
            avx2::transpose_8_channels_half::<BF16>(w, stride, k, dst)
        }
    }
}

impl PanelElement for f16 {
    fn channels(data: &[f16], stride: usize) -> Weights<'_> {
        Weights::HalfChannels { data, stride }
    }

    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn transpose(
        wide: bool,
        w: *const f16,
        stride: usize,
        k: usize,
        dst: *mut f32,
    ) -> usize {
        // SAFETY: the caller's promise, passed on; f16 values are read as their bits.
        unsafe { transpose_half::<false>(wide, w.cast(), stride, k, dst) }
    }
}

impl PanelElement for bf16 {
    fn channels(data: &[bf16], stride: usize) -> Weights<'_> {
        Weights::Bf16Channels { data, stride }
    }

    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn transpose(
        wide: bool,
        w: *const bf16,
        stride: usize,
        k: usize,
        dst: *mut f32,
    ) -> usize {
        // SAFETY: the caller's promise, passed on; bf16 values are read as their bits.
        unsafe { transpose_half::<true>(wide, w.cast(), stride, k, dst) }
    }
}

/// Transposes channels `col0..col0 + width` (each `k` inputs, `stride` apart in `w`) into
/// `packed`'s `k` rows of 32, as f32: 16 x 16 blocks in registers on AVX-512, 8 x 8 on AVX2, the
/// ragged rest one at a time.
fn pack_channels<T: PanelElement>(
    isa: Isa,
    w: &[T],
    stride: usize,
    k: usize,
    col0: usize,
    width: usize,
    packed: &mut [f32],
) {
    let (wide, block) = if isa.avx512() { (true, 16) } else { (false, 8) };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = wide;
    for part in 0..TILE_COLS / block {
        let (c0, c1) = (block * part, width.min(block * (part + 1)));
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if isa.avx2_fma() && c1 - c0.min(c1) == block {
            let channels = &w[(col0 + c0) * stride..(col0 + c0 + block - 1) * stride + k];
            // SAFETY: `isa` (made by detection) is an AVX-512 path if `wide`, else one with AVX2,
            // FMA and F16C; `channels` holds `block` rows of `k`, `stride` apart, and the panel
            // `k` rows of 32 from column `c0 <= 32 - block`.
            done = unsafe {
                T::transpose(
                    wide,
                    channels.as_ptr(),
                    stride,
                    k,
                    packed[c0..].as_mut_ptr(),
                )
            };
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

    use crate::kernels::panels::{
        assert_f32_matmul_matches, assert_matches_straightforward, test_values as random,
    };

    /// The tile kernel against the straightforward product of a `rows x k` by `n x k` weight.
    fn check(isa: Isa, shape: (usize, usize, usize)) {
        assert_f32_matmul_matches(shape, |x, w, n, dst, epilogue| {
            matmul(isa, x, w, n, dst, epilogue)
        });
    }

    /// [`matmul`] of a half-precision weight (`from_f32` rounds test values to it) against the
    /// straightforward product with the weight's values.
    fn check_half<T: PanelElement>(
        isa: Isa,
        (rows, k, n): (usize, usize, usize),
        from_f32: fn(f32) -> T,
    ) {
        let w: Vec<T> = random(n * k, 4).into_iter().map(from_f32).collect();
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
        let weight = |p: usize, c: usize| w[c * k + p].to_f32() as f64;
        assert_matches_straightforward((rows, k, n), |v| v as f64, weight, product, 1e-4);
    }

    fn check_f16(isa: Isa, shape: (usize, usize, usize)) {
        check_half(isa, shape, f16::from_f32);
    }

    fn check_bf16(isa: Isa, shape: (usize, usize, usize)) {
        check_half(isa, shape, bf16::from_f32);
    }

    /// The paths the tiles run half-precision weights on here, one for each width (AVX-512's
    /// 16 x 16 packing and 8 x 32 tiles, AVX2's 8 x 8 and four rows by 16), whatever
    /// `SLIMBENCH_KERNELS` says.
    fn paths() -> Vec<Isa> {
        let mut paths: Vec<Isa> = Isa::available()
            .into_iter()
            .filter(|i| runs_half_on(*i))
            .collect();
        paths.dedup_by_key(|i| i.avx512());
        if paths.is_empty() {
            eprintln!("skipped: this CPU has no AVX2 and FMA, the tiles do not run here");
        }
        paths
    }

    /// The paths among [`paths`] that run f32 weights on the tiles (AVX-512).
    fn f32_paths() -> Vec<Isa> {
        let paths: Vec<Isa> = paths().into_iter().filter(|i| runs_on(*i)).collect();
        if paths.is_empty() {
            eprintln!("skipped: this CPU has no AVX-512, f32 does not run on the tiles here");
        }
        paths
    }

    proptest! {
        #[test]
        fn tiles_match_the_straightforward_product(
            rows in 5usize..40, k in 1usize..70, n in 1usize..80,
        ) {
            for isa in f32_paths() {
                check(isa, (rows, k, n));
            }
        }

        #[test]
        fn f16_and_bf16_tiles_match_the_straightforward_product(
            rows in 5usize..40, k in 1usize..70, n in 1usize..80,
        ) {
            for isa in paths() {
                check_f16(isa, (rows, k, n));
                check_bf16(isa, (rows, k, n));
            }
        }
    }

    #[test]
    fn half_precision_products_of_minilm_shapes_match_over_threads() {
        for isa in paths() {
            check_f16(isa, (128, 384, 1536));
            check_f16(isa, (130, 1536, 385));
            check_bf16(isa, (128, 384, 1536));
        }
    }

    #[test]
    fn half_precision_products_of_many_inputs_match_over_blocks_of_inputs() {
        // 300 inputs: two whole blocks of the AVX2 tile's inputs and a ragged third.
        for isa in paths() {
            check_bf16(isa, (21, 300, 70));
        }
    }

    #[test]
    fn f32_products_without_avx512_are_left_to_the_dot_tiles() {
        for isa in paths().into_iter().filter(|i| !i.avx512()) {
            let x = [1.0f32; 10];
            let mut dst = [7.0f32; 10];
            let view = MatRef::new(&x, 5, 2);
            assert!(!matmul(isa, view, &x, 2, &mut dst, Epilogue::default()));
            assert_eq!(dst, [7.0; 10]);
        }
    }

    #[test]
    fn products_of_up_to_four_rows_are_left_to_the_row_kernel() {
        for isa in f32_paths() {
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
    }

    #[test]
    fn products_over_many_tasks_and_threads_match() {
        for isa in f32_paths() {
            // 200 rows (three tasks of rows, a tail of 8), 300 channels (a tail of 12), a
            // MiniLM-wide input: the threaded path.
            check(isa, (200, 384, 300));
        }
    }

    #[test]
    fn the_epilogue_is_fused() {
        let (k, n) = (37, 45);
        let w = random(k * n, 5);
        for isa in f32_paths() {
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
    }

    #[test]
    fn names_say_the_width_and_the_precision() {
        for isa in paths() {
            let width = if isa.avx512() { "avx512" } else { "avx2" };
            assert_eq!(name(isa, "bf16"), format!("bf16-tiles-{width}"));
        }
    }

    #[test]
    fn strided_products_in_either_weight_order_match_attention_shapes() {
        for isa in f32_paths() {
            strided_products_match(isa);
        }
    }

    fn strided_products_match(isa: Isa) {
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
