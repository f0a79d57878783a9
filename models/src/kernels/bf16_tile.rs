//! slimbench's own bf16 product for a Linear on CPUs with AVX512_BF16 (`vdpbf16ps`: 32 bf16
//! multiply-adds an instruction into 16 f32 sums, twice the f32 FMA's work): the activations
//! rounded to bf16 once a product (as the widening path rounds them), the `out x in` bf16 weight
//! packed by each task into pairs of inputs, sums kept in f32, the bias, residual and GELU
//! applied as each tile is stored. Products of one to four rows (a decode step) stream the weight
//! through [`f32_rows`](crate::kernels::f32_rows) instead, widened to f32 on every path; larger
//! ones without AVX512_BF16 (or with `SLIMBENCH_KERNELS` narrowed below AVX-512) run the f32
//! tiles, each task widening its panel ([`f32_tile`](crate::kernels::f32_tile)), and on the
//! portable path candle, which widens the whole weight to f32.

use half::bf16;

use crate::kernels::epilogue::Epilogue;
use crate::kernels::isa::Isa;
use crate::kernels::panels::{by_tile_rows, run_tiles, TileSums, TILE_COLS};
use crate::kernels::sgemm::MatRef;

/// The name records give this kernel (`technique_params.bf16_kernel`).
pub const NAME: &str = "bf16-avx512bf16";

/// Whether the kernel runs on `isa`: an AVX-512 path on a CPU with AVX512_BF16.
pub fn runs_on(isa: Isa) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        isa.avx512() && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        false
    }
}

/// What runs a bf16 Linear of slimbench's own CPU inference on the path in use, as records name
/// it: this kernel for five rows or more (else the f32 tiles widening each panel, else candle,
/// which widens the whole weight), then the one-row kernel (`bf16-avx512bf16+bf16-rows-avx512`,
/// `bf16-tiles-avx2+bf16-rows-avx2`, `candle-widened-f32+bf16-rows-portable`).
pub fn linear_kernel_name() -> String {
    let isa = Isa::get();
    let tiles = if runs_on(isa) {
        NAME.to_string()
    } else if crate::kernels::f32_tile::runs_half_on(isa) {
        crate::kernels::f32_tile::name(isa, "bf16")
    } else {
        "candle-widened-f32".into()
    };
    format!("{tiles}+{}", crate::kernels::f32_rows::half_name(isa, true))
}

/// Rounds `x` to bf16 (to nearest, ties to even) in pairs of inputs: `rows x k.div_ceil(2)` words,
/// input `2p` in the low half of word `p`, `2p + 1` (or zero past `k`) in the high half (the
/// bf16 values in memory order).
fn pairs(x: &[f32], rows: usize, k: usize) -> Vec<u32> {
    let k2 = k.div_ceil(2);
    let mut out = vec![0u32; rows * k2];
    for (row, words) in x.chunks_exact(k).take(rows).zip(out.chunks_exact_mut(k2)) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `matmul` runs only where `runs_on` found AVX-512 F and BF16.
        let done = unsafe { round_pairs_avx512(row, words) };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        for (p, word) in words.iter_mut().enumerate().skip(done) {
            let lo = bf16::from_f32(row[2 * p]).to_bits() as u32;
            let hi = row
                .get(2 * p + 1)
                .map_or(0, |v| bf16::from_f32(*v).to_bits() as u32);
            *word = lo | (hi << 16);
        }
    }
    out
}

/// Rounds the whole 32-input blocks of `row` into `words` with `vcvtne2ps2bf16`; returns the
/// words written.
///
/// # Safety
/// AVX-512 F and BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn round_pairs_avx512(row: &[f32], words: &mut [u32]) -> usize {
    use std::arch::x86_64::*;
    let blocks = row.len() / 32;
    for b in 0..blocks {
        // SAFETY: inputs `32 b .. 32 b + 32` lie in `row` and words `16 b .. 16 b + 16` in
        // `words` (`row.len().div_ceil(2)` long).
        unsafe {
            let lo = _mm512_loadu_ps(row.as_ptr().add(32 * b));
            let hi = _mm512_loadu_ps(row.as_ptr().add(32 * b + 16));
            let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_storeu_si512(words.as_mut_ptr().add(16 * b).cast(), v);
        }
    }
    16 * blocks
}

/// Packs channels `col0..col0 + width` (`width <= 32`) of the `n x k` (`out x in`) weight into
/// `k2` rows of 32 words: word `p * 32 + c` holds inputs `2p` and `2p + 1` of channel `col0 + c`,
/// as `vdpbf16ps` pairs them (zero past `width` and past `k`). A pair is one 32-bit word of the
/// channel's row, so with `k` even each 16 channels are a 16 x 16 transpose of words in registers
/// (the f32 tiles' [`transpose_16_channels`](crate::kernels::x86::avx512::transpose_16_channels));
/// the rest is copied a pair at a time.
fn pack_panel(w: &[bf16], k: usize, n: usize, col0: usize, width: usize, packed: &mut [u32]) {
    let k2 = k.div_ceil(2);
    assert!(col0 + width <= n && w.len() >= k * n && packed.len() >= k2 * TILE_COLS);
    for half in 0..TILE_COLS / 16 {
        let (c0, c1) = (16 * half, width.min(16 * (half + 1)));
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if k.is_multiple_of(2) && c1 - c0.min(c1) == 16 {
            // SAFETY: `matmul` runs only where `runs_on` found AVX-512 F; the 16 channels of `k`
            // bf16 (`k2` words each, `k2` words apart, read unaligned) lie in `w` (asserted
            // above), and the panel holds `k2` rows of 32 words from column `c0 <= 16`.
            done = unsafe {
                crate::kernels::x86::avx512::transpose_16_channels(
                    w.as_ptr().add((col0 + c0) * k).cast::<f32>(),
                    k2,
                    k2,
                    packed[c0..].as_mut_ptr().cast::<f32>(),
                )
            };
        }
        for c in c0..c1 {
            let channel = &w[(col0 + c) * k..(col0 + c + 1) * k];
            for p in done..k2 {
                let lo = channel[2 * p].to_bits() as u32;
                let hi = channel.get(2 * p + 1).map_or(0, |v| v.to_bits() as u32);
                packed[p * TILE_COLS + c] = lo | (hi << 16);
            }
        }
    }
}

/// `dst = epilogue(x W^T)` for the contiguous `rows x k` activations `x` (rounded to bf16 here)
/// and the row-major `n x k` (`out x in`) bf16 weight `w`, into `dst` (`rows x n`), sums in f32. Returns
/// `false`, touching nothing, when `isa` does not run it. Panics, like indexing, when a slice is
/// shorter than its shape.
pub(crate) fn matmul(
    isa: Isa,
    x: MatRef<'_>,
    w: &[bf16],
    n: usize,
    dst: &mut [f32],
    epilogue: Epilogue<'_>,
) -> bool {
    if !runs_on(isa) {
        return false;
    }
    let (rows, k) = (x.rows, x.cols);
    assert!(
        x.row_stride == k && x.col_stride == 1,
        "contiguous activations"
    );
    assert!(x.data.len() >= rows * k, "activations shape");
    assert!(w.len() >= k * n, "weight shape");
    let k2 = k.div_ceil(2);
    let a = pairs(x.data, rows, k);
    let pack = |col0: usize, width: usize| {
        let mut packed = vec![0u32; k2 * TILE_COLS];
        pack_panel(w, k, n, col0, width, &mut packed);
        packed
    };
    let tile = |packed: &Vec<u32>, row: usize, mr: usize, sums: &mut TileSums| {
        assert!((row + mr) * k2 <= a.len() && packed.len() == k2 * TILE_COLS);
        let (a, b) = (a[row * k2..].as_ptr(), packed.as_ptr());
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `runs_on` confirmed AVX-512 F and BF16; `a` holds `mr` rows of `k2` words and
        // `b` `k2` rows of 32 (asserted above).
        unsafe {
            by_tile_rows!(mr, tile_bf16(a, k2, b, sums))
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (a, b, sums);
    };
    run_tiles((rows, k, n), dst, epilogue, pack, tile);
    true
}

/// The f32 sums of `MR` rows of input pairs (`a`, `k2` words apart) against a packed panel (`b`:
/// `k2` rows of 32 words), into `out`'s first `MR` rows.
///
/// # Safety
/// AVX-512 F and BF16; `a` valid for `MR * k2` reads, `b` for `k2 * 32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile_bf16<const MR: usize>(a: *const u32, k2: usize, b: *const u32, out: &mut TileSums) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    // SAFETY: every read lies in the rows and the panel the caller vouches for; `__m512bh` is
    // 32 bf16 in the bits of a 512-bit integer vector.
    unsafe {
        for p in 0..k2 {
            let row = b.add(p * TILE_COLS);
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(row.cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(row.add(16).cast()));
            for (i, acc) in acc.iter_mut().enumerate() {
                let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(i * k2 + p) as i32));
                acc[0] = _mm512_dpbf16_ps(acc[0], x, b0);
                acc[1] = _mm512_dpbf16_ps(acc[1], x, b1);
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

    /// The kernel against the product it promises: both operands rounded to bf16, the sums
    /// exact.
    fn check(isa: Isa, (rows, k, n): (usize, usize, usize), tolerance: f64) {
        let w = weight(k, n, 2);
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
        let round = |v: f32| bf16::from_f32(v).to_f32() as f64;
        let value = |p: usize, c: usize| w[c * k + p].to_f32() as f64;
        assert_matches_straightforward((rows, k, n), round, value, product, tolerance);
    }

    fn bf16_isa() -> Option<Isa> {
        let isa = Isa::available().into_iter().find(|i| runs_on(*i));
        if isa.is_none() {
            eprintln!("skipped: this CPU has no AVX512_BF16, the bf16 kernel does not run here");
        }
        isa
    }

    fn weight(k: usize, n: usize, seed: u64) -> Vec<bf16> {
        random(k * n, seed)
            .into_iter()
            .map(bf16::from_f32)
            .collect()
    }

    proptest! {
        #[test]
        fn tiles_match_the_straightforward_product(
            rows in 1usize..30, k in 1usize..70, n in 1usize..80,
        ) {
            let Some(isa) = bf16_isa() else { return Ok(()) };
            check(isa, (rows, k, n), 1e-4);
        }
    }

    #[test]
    fn threaded_products_and_the_epilogue_match() {
        let Some(isa) = bf16_isa() else { return };
        // An odd `k` packs a pair at a time, an even one by 16 x 16 transposes.
        check(isa, (200, 385, 300), 1e-4);
        check(isa, (130, 384, 100), 1e-4);
        let (k, n) = (37, 45);
        let w = weight(k, n, 5);
        crate::kernels::epilogue::assert_fused_epilogue(13, k, n, random, |x, rows, dst, e| {
            assert!(matmul(isa, MatRef::new(x, rows, k), &w, n, dst, e));
        });
    }

    #[test]
    fn other_paths_are_declined_untouched() {
        let x = [1.0f32; 4];
        let w = [bf16::ONE; 4];
        let mut dst = [7.0f32; 4];
        let view = MatRef::new(&x, 2, 2);
        assert!(!matmul(
            Isa::portable(),
            view,
            &w,
            2,
            &mut dst,
            Epilogue::default()
        ));
        assert_eq!(dst, [7.0; 4]);
    }
}
