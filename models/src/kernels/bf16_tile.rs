//! slimbench's own bf16 product for a Linear on CPUs with AVX512_BF16 (`vdpbf16ps`: 32 bf16
//! multiply-adds an instruction into 16 f32 sums, twice the f32 FMA's work): the activations
//! rounded to bf16 once a product (as the widening path rounds them), the `k x n` transposed bf16
//! weight packed by each task into pairs of inputs, sums kept in f32, the bias, residual and GELU
//! applied as each tile is stored. Without AVX512_BF16 (or with `SLIMBENCH_KERNELS` narrowed below
//! AVX-512) the layer goes through candle, which widens bf16 to f32.

use half::bf16;
use rayon::prelude::*;

use crate::kernels::epilogue::Epilogue;
use crate::kernels::isa::Isa;
use crate::kernels::qgemm::worth_threads;

/// Output channels of one panel (two vectors of 16 f32 sums).
const TILE_COLS: usize = 32;
/// Rows of one tile (8 x 2 accumulators).
const TILE_ROWS: usize = 8;
/// Rows one task covers.
const TASK_ROWS: usize = 12 * TILE_ROWS;

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
/// it: this kernel, or candle (which widens bf16 to f32).
pub fn linear_kernel_name() -> &'static str {
    if runs_on(Isa::get()) {
        NAME
    } else {
        "candle-widened-f32"
    }
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

/// Packs columns `col0..col0 + width` (`width <= 32`) of the `k x n` weight into `k2` rows of 32
/// words: word `p * 32 + c` holds inputs `2p` and `2p + 1` of column `col0 + c`, as `vdpbf16ps`
/// pairs them (zero past `width` and past `k`).
fn pack_panel(w_t: &[bf16], k: usize, n: usize, col0: usize, width: usize, packed: &mut [u32]) {
    assert!(col0 + width <= n && w_t.len() >= k * n && packed.len() >= k.div_ceil(2) * TILE_COLS);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `matmul` runs only where `runs_on` found AVX-512 (F, BW, VL: the Isa's AVX-512
    // paths); the shapes are asserted above.
    unsafe {
        pack_panel_avx512(w_t, k, n, col0, width, packed);
    }
    #[cfg(not(target_arch = "x86_64"))]
    for (p, words) in packed.chunks_exact_mut(TILE_COLS).enumerate() {
        for (c, word) in words[..width].iter_mut().enumerate() {
            let lo = w_t[2 * p * n + col0 + c].to_bits() as u32;
            let hi = if 2 * p + 1 < k {
                w_t[(2 * p + 1) * n + col0 + c].to_bits() as u32
            } else {
                0
            };
            *word = lo | (hi << 16);
        }
    }
}

/// [`pack_panel`] sixteen columns at a time: each half-row widened to 32-bit lanes, the odd
/// input shifted into the high halves.
///
/// # Safety
/// AVX-512 F, BW and VL; the shapes [`pack_panel`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn pack_panel_avx512(
    w_t: &[bf16],
    k: usize,
    n: usize,
    col0: usize,
    width: usize,
    packed: &mut [u32],
) {
    use std::arch::x86_64::*;
    let lanes = |w: usize| -> __mmask16 { ((1u32 << w.min(16)) - 1) as __mmask16 };
    let masks = [lanes(width), lanes(width.saturating_sub(16))];
    let base = w_t.as_ptr().cast::<i16>();
    for p in 0..k.div_ceil(2) {
        for (half, &mask) in masks.iter().enumerate() {
            let col = col0 + 16 * half;
            // SAFETY: masked lanes lie in columns `col0..col0 + width` of rows 2p and 2p + 1
            // (the latter only below `k`); the 16 words lie in `packed`'s row p.
            unsafe {
                let even = _mm256_maskz_loadu_epi16(mask, base.add(2 * p * n + col));
                let odd = if 2 * p + 1 < k {
                    _mm256_maskz_loadu_epi16(mask, base.add((2 * p + 1) * n + col))
                } else {
                    _mm256_setzero_si256()
                };
                let words = _mm512_or_si512(
                    _mm512_cvtepu16_epi32(even),
                    _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(odd)),
                );
                _mm512_storeu_si512(
                    packed.as_mut_ptr().add(p * TILE_COLS + 16 * half).cast(),
                    words,
                );
            }
        }
    }
}

/// `dst = epilogue(x W)` for `rows` rows of `x` (`rows x k`, rounded to bf16 here) and the
/// row-major `k x n` bf16 weight `w_t`, into `dst` (`rows x n`), sums in f32. Returns `false`,
/// touching nothing, when `isa` does not run it. Panics, like indexing, when a slice is shorter
/// than its shape.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    isa: Isa,
    x: &[f32],
    rows: usize,
    k: usize,
    w_t: &[bf16],
    n: usize,
    dst: &mut [f32],
    epilogue: Epilogue<'_>,
) -> bool {
    if !runs_on(isa) {
        return false;
    }
    assert!(x.len() >= rows * k, "activations shape");
    assert!(w_t.len() >= k * n, "weight shape");
    assert_eq!(dst.len(), rows * n, "output shape");
    epilogue.check(rows, n);
    if rows == 0 || n == 0 {
        return true;
    }
    let k2 = k.div_ceil(2);
    let a = pairs(x, rows, k);
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
        // The panel as pairs of inputs: word `p * 32 + c` holds inputs 2p and 2p + 1 of column
        // `col0 + c`, as `vdpbf16ps` pairs them.
        let mut packed = vec![0u32; k2 * TILE_COLS];
        pack_panel(w_t, k, n, col0, width, &mut packed);
        let row_end = ((chunk + 1) * chunk_rows).min(rows);
        let mut row = chunk * chunk_rows;
        while row < row_end {
            let mr = (row_end - row).min(TILE_ROWS);
            let mut out = [[0f32; TILE_COLS]; TILE_ROWS];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `runs_on` confirmed AVX-512 F and BF16; rows `row..row + mr` of `a` hold
            // `k2` words each and `packed` holds `k2` rows of 32.
            unsafe {
                tile(&a[row * k2..(row + mr) * k2], mr, k2, &packed, &mut out)
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

/// Dispatches a tile of `mr <= 8` rows of pairs (`a`: `mr x k2` words) to its kernel.
///
/// # Safety
/// The CPU must have AVX-512 F and BF16; `a` must hold `mr * k2` words and `packed` `k2 * 32`.
#[cfg(target_arch = "x86_64")]
unsafe fn tile(
    a: &[u32],
    mr: usize,
    k2: usize,
    packed: &[u32],
    out: &mut [[f32; TILE_COLS]; TILE_ROWS],
) {
    debug_assert!(a.len() >= mr * k2 && packed.len() >= k2 * TILE_COLS);
    let (a, b) = (a.as_ptr(), packed.as_ptr());
    // SAFETY: the caller's promise.
    unsafe {
        match mr {
            8 => tile_bf16::<8>(a, k2, b, out),
            7 => tile_bf16::<7>(a, k2, b, out),
            6 => tile_bf16::<6>(a, k2, b, out),
            5 => tile_bf16::<5>(a, k2, b, out),
            4 => tile_bf16::<4>(a, k2, b, out),
            3 => tile_bf16::<3>(a, k2, b, out),
            2 => tile_bf16::<2>(a, k2, b, out),
            _ => tile_bf16::<1>(a, k2, b, out),
        }
    }
}

/// The f32 sums of `MR` rows of input pairs (`a`, `k2` words apart) against a packed panel (`b`:
/// `k2` rows of 32 words), into `out`'s first `MR` rows.
///
/// # Safety
/// AVX-512 F and BF16; `a` valid for `MR * k2` reads, `b` for `k2 * 32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile_bf16<const MR: usize>(
    a: *const u32,
    k2: usize,
    b: *const u32,
    out: &mut [[f32; TILE_COLS]; TILE_ROWS],
) {
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

    fn random(n: usize, seed: u64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let v = (i as u64 * 2654435761 + seed * 97) % 1000;
                v as f32 / 500.0 - 1.0
            })
            .collect()
    }

    /// The product the kernel promises: both operands rounded to bf16, the sums exact.
    fn straightforward(x: &[f32], rows: usize, k: usize, w_t: &[bf16], n: usize) -> Vec<f64> {
        let round = |v: f32| bf16::from_f32(v).to_f32() as f64;
        let mut out = vec![0.0; rows * n];
        for r in 0..rows {
            for c in 0..n {
                out[r * n + c] = (0..k)
                    .map(|p| round(x[r * k + p]) * w_t[p * n + c].to_f32() as f64)
                    .sum();
            }
        }
        out
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
            let x = random(rows * k, 1);
            let w = weight(k, n, 2);
            let mut dst = vec![f32::NAN; rows * n];
            prop_assert!(matmul(isa, &x, rows, k, &w, n, &mut dst, Epilogue::default()));
            let want = straightforward(&x, rows, k, &w, n);
            for (d, w) in dst.iter().zip(&want) {
                prop_assert!((*d as f64 - w).abs() < 1e-4 * (1.0 + w.abs()), "{d} vs {w}");
            }
        }
    }

    #[test]
    fn threaded_products_and_the_epilogue_match() {
        let Some(isa) = bf16_isa() else { return };
        let (rows, k, n) = (200, 385, 300);
        let x = random(rows * k, 3);
        let w = weight(k, n, 4);
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
        let (k, n) = (37, 45);
        let w = weight(k, n, 5);
        crate::kernels::epilogue::assert_fused_epilogue(13, k, n, random, |x, rows, dst, e| {
            assert!(matmul(isa, x, rows, k, &w, n, dst, e));
        });
    }

    #[test]
    fn other_paths_are_declined_untouched() {
        let x = [1.0f32; 4];
        let w = [bf16::ONE; 4];
        let mut dst = [7.0f32; 4];
        assert!(!matmul(
            Isa::portable(),
            &x,
            2,
            2,
            &w,
            2,
            &mut dst,
            Epilogue::default()
        ));
        assert_eq!(dst, [7.0; 4]);
    }
}
