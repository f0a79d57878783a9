//! slimbench's f32 product for a Linear on AVX2: tiles of dot products along the inputs, four
//! channels of the `out x in` weight by three rows of activations in 12 accumulators of 8 lanes
//! (llamafile's tinyBLAS scheme), so neither operand is packed or transposed. The `gemm` crate,
//! which ran these products before, transposed the weight into panels on every call (15% of
//! SmolLM2's prefill on AVX2); these tiles read it in place.
//!
//! A task is a chunk of rows by a panel of 32 channels (`panels.rs`): it walks the panel four
//! channels at a time, each against every row of the chunk, so the four channels stay in L1 while
//! the rows stream from L2; inputs come in blocks of at most 768 so that four
//! channels and three rows of a block fit L1 together. AVX-512 paths run their own tiles
//! ([`crate::kernels::f32_tile`]); products of up to four rows are [`crate::kernels::f32_rows`].

use std::ops::Range;

use crate::kernels::epilogue::Epilogue;
use crate::kernels::isa::Isa;
use crate::kernels::panels::{run_chunks, TILE_COLS};
use crate::kernels::qgemm::ONE_ROW_MAX_ROWS;
use crate::kernels::sgemm::MatRef;

/// The name records give this kernel (`technique_params.f32_kernel`, before the one-row
/// kernel's).
pub const NAME: &str = "f32-dots-avx2";

/// Channels of one dot tile.
const TILE_CHANNELS: usize = 4;
/// Rows of one dot tile: 4 x 3 accumulators, three rows and a channel fit AVX2's 16 registers.
const TILE_ROWS: usize = 3;
/// The most inputs one pass of a tile reads: 768 inputs of four channels and three rows are
/// 21 KB, inside a 32 KB L1 data cache. A longer product is summed in blocks (SmolLM2's
/// `down` projection, 1536 inputs, in two: 177-186 GFLOP/s against 165-174 unblocked, three runs
/// on Zen 4 with `SLIMBENCH_KERNELS=avx2`).
const BLOCK_INPUTS: usize = 768;

/// Whether f32 Linears run on the dot tiles on `isa`: the paths with AVX2 and FMA but not
/// AVX-512 (which has its own tiles).
pub fn runs_on(isa: Isa) -> bool {
    cfg!(target_arch = "x86_64") && isa.avx2_fma() && !isa.avx512()
}

/// `dst = epilogue(x W^T)` for the `rows x k` activations `x` (columns contiguous) and the
/// contiguous `n x k` weight `w`, into `dst` (`rows x n`). Returns `false`, touching nothing,
/// when the dot tiles do not run on `isa` ([`runs_on`]) or the product has at most four rows
/// (the caller then uses [`crate::kernels::f32_rows`]). Panics, like indexing, when a slice is
/// shorter than its shape.
pub(crate) fn matmul(
    isa: Isa,
    x: MatRef<'_>,
    w: &[f32],
    n: usize,
    dst: &mut [f32],
    epilogue: Epilogue<'_>,
) -> bool {
    let (rows, k, ldx) = (x.rows, x.cols, x.row_stride);
    if !runs_on(isa) || rows <= ONE_ROW_MAX_ROWS {
        return false;
    }
    assert!(x.col_stride == 1, "activations with contiguous columns");
    assert!(
        k == 0 || x.data.len() >= (rows - 1) * ldx + k,
        "activations shape"
    );
    assert!(n == 0 || w.len() >= n * k, "weight shape");
    let blocks = k.div_ceil(BLOCK_INPUTS).max(1);
    let block = k.div_ceil(blocks).next_multiple_of(8).max(8);
    let chunk = |range: Range<usize>, col0: usize, width: usize, sums: &mut [[f32; TILE_COLS]]| {
        for p0 in (0..k).step_by(block) {
            let inputs = p0..(p0 + block).min(k);
            for c in (0..width).step_by(TILE_CHANNELS) {
                let channels = col0 + c..col0 + (c + TILE_CHANNELS).min(width);
                let next = channels.end..col0 + (c + 2 * TILE_CHANNELS).min(width);
                let quad = Quad {
                    w,
                    x,
                    inputs: inputs.clone(),
                };
                quad.run(isa, channels, next, range.clone(), sums, c);
            }
        }
    };
    run_chunks((rows, k, n), dst, epilogue, chunk);
    true
}

/// One block of inputs of one task's product, for one group of up to four channels at a time.
struct Quad<'a> {
    /// The `n x k` weight.
    w: &'a [f32],
    /// The activations (`k` columns).
    x: MatRef<'a>,
    /// The block's inputs (the first block's sums start from zero, a later one's from `sums`).
    inputs: Range<usize>,
}

impl Quad<'_> {
    /// Adds the products of `channels` (at most four) over the block's inputs, for every row of
    /// `rows`, to `sums[row - rows.start][col..]`, three rows a tile; before each tile it asks
    /// for a share of the cache lines of `next` (the following channels), so they are in L1 when
    /// their turn comes rather than read from memory by their first tile (a weight is read once
    /// a product, so it is rarely cached).
    fn run(
        &self,
        isa: Isa,
        channels: Range<usize>,
        next: Range<usize>,
        rows: Range<usize>,
        sums: &mut [[f32; TILE_COLS]],
        col: usize,
    ) {
        debug_assert!(runs_on(isa), "the dot tiles on a path without AVX2 and FMA");
        let (k, ldx, inputs) = (self.x.cols, self.x.row_stride, self.inputs.clone());
        let line_floats = 16;
        let channel_lines = inputs.len().div_ceil(line_floats);
        let next_lines = next.len() * channel_lines;
        let share = next_lines.div_ceil(rows.len().div_ceil(TILE_ROWS));
        for (t, r) in rows.clone().step_by(TILE_ROWS).enumerate() {
            for line in (t * share..(t + 1) * share).take_while(|&l| l < next_lines) {
                let (channel, part) = (line / channel_lines, line % channel_lines);
                prefetch(&self.w[(next.start + channel) * k + inputs.start + part * line_floats]);
            }
            let tile_rows = TILE_ROWS.min(rows.end - r);
            let w = &self.w[channels.start * k + inputs.start..(channels.end - 1) * k + inputs.end];
            let x = &self.x.data[r * ldx + inputs.start..(r + tile_rows - 1) * ldx + inputs.end];
            let out = &mut sums[r - rows.start..];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa` (made by detection) has AVX2 and FMA (the caller checked it runs the
            // dot tiles); `w` holds `channels.len()` rows of the block's inputs, `k` apart, and
            // `x` `tile_rows` rows of them, `ldx` apart (sliced above).
            unsafe {
                let tile = Tile {
                    w: (w, k),
                    x: (x, ldx),
                    inputs: inputs.len(),
                    accumulate: inputs.start > 0,
                };
                tile.run(channels.len(), tile_rows, out, col)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (w, x, out, col);
        }
    }
}

/// Asks the CPU to bring the cache line holding `value` into L1 (a hint: nothing on other
/// architectures).
#[inline(always)]
fn prefetch(value: &f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and cannot fault; `value` is a live
    // reference in any case. SSE, which has it, is part of x86_64.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((value as *const f32).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// The operands of one dot tile: channels and rows, each with the distance between them.
#[cfg(target_arch = "x86_64")]
struct Tile<'a> {
    w: (&'a [f32], usize),
    x: (&'a [f32], usize),
    inputs: usize,
    accumulate: bool,
}

#[cfg(target_arch = "x86_64")]
impl Tile<'_> {
    /// [`f32_dot_tile`](crate::kernels::x86::avx2::f32_dot_tile) for `channels <= 4` and `rows
    /// <= 3`, each shape compiled with its accumulators in registers.
    ///
    /// # Safety
    /// As for that function.
    unsafe fn run(&self, channels: usize, rows: usize, out: &mut [[f32; TILE_COLS]], col: usize) {
        use crate::kernels::x86::avx2::f32_dot_tile as tile;
        let (w, x) = ((self.w.0.as_ptr(), self.w.1), (self.x.0.as_ptr(), self.x.1));
        let (k, acc) = (self.inputs, self.accumulate);
        // SAFETY: the caller's promise, passed on.
        unsafe {
            match (channels, rows) {
                (4, 3) => tile::<4, 3>(w, x, k, acc, out, col),
                (4, 2) => tile::<4, 2>(w, x, k, acc, out, col),
                (4, _) => tile::<4, 1>(w, x, k, acc, out, col),
                (3, 3) => tile::<3, 3>(w, x, k, acc, out, col),
                (3, 2) => tile::<3, 2>(w, x, k, acc, out, col),
                (3, _) => tile::<3, 1>(w, x, k, acc, out, col),
                (2, 3) => tile::<2, 3>(w, x, k, acc, out, col),
                (2, 2) => tile::<2, 2>(w, x, k, acc, out, col),
                (2, _) => tile::<2, 1>(w, x, k, acc, out, col),
                (_, 3) => tile::<1, 3>(w, x, k, acc, out, col),
                (_, 2) => tile::<1, 2>(w, x, k, acc, out, col),
                _ => tile::<1, 1>(w, x, k, acc, out, col),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::kernels::panels::{assert_f32_matmul_matches, test_values as random};

    /// The dot tiles against the straightforward product of a `rows x k` by `n x k` weight.
    fn check(isa: Isa, shape: (usize, usize, usize)) {
        assert_f32_matmul_matches(shape, |x, w, n, dst, epilogue| {
            matmul(isa, x, w, n, dst, epilogue)
        });
    }

    /// The path the dot tiles run on here (AVX2's, or AVX-VNNI's where the CPU has it), whatever
    /// `SLIMBENCH_KERNELS` says.
    fn dot_path() -> Option<Isa> {
        let path = Isa::available().into_iter().find(|i| runs_on(*i));
        if path.is_none() {
            eprintln!("skipped: this CPU has no AVX2 and FMA, the dot tiles do not run here");
        }
        path
    }

    proptest! {
        #[test]
        fn dot_tiles_match_the_straightforward_product(
            rows in 5usize..40, k in 0usize..70, n in 1usize..80,
        ) {
            // Every shape of tile (1-4 channels by 1-3 rows) and the masked tail of 1-7 inputs.
            if let Some(isa) = dot_path() {
                check(isa, (rows, k, n));
            }
        }
    }

    #[test]
    fn products_over_blocks_of_inputs_tasks_and_threads_match() {
        if let Some(isa) = dot_path() {
            // SmolLM2's `down` projection (1536 inputs: two blocks), MiniLM's, and 1001 inputs
            // (two blocks of 504 and 497, a ragged tail); 200 rows are two tasks of rows, on threads.
            check(isa, (128, 1536, 64));
            check(isa, (200, 384, 300));
            check(isa, (13, 1001, 37));
        }
    }

    #[test]
    fn the_epilogue_is_fused() {
        let (k, n) = (37, 45);
        let w = random(k * n, 5);
        if let Some(isa) = dot_path() {
            for rows in [13, 5] {
                crate::kernels::epilogue::assert_fused_epilogue(
                    rows,
                    k,
                    n,
                    random,
                    |x, rows, dst, epilogue| {
                        let view = MatRef::new(x, rows, k);
                        assert!(matmul(isa, view, &w, n, dst, epilogue));
                    },
                );
            }
        }
    }

    #[test]
    fn avx512_portable_and_short_products_are_declined_untouched() {
        let x = [1.0f32; 10];
        let mut paths: Vec<Isa> = Isa::available()
            .into_iter()
            .filter(|i| i.avx512())
            .collect();
        paths.push(Isa::portable());
        for isa in paths {
            let mut dst = [7.0f32; 10];
            let view = MatRef::new(&x, 5, 2);
            assert!(!matmul(isa, view, &x, 2, &mut dst, Epilogue::default()));
            assert_eq!(dst, [7.0; 10]);
        }
        if let Some(isa) = dot_path() {
            let mut dst = [7.0f32; 8];
            let view = MatRef::new(&x, 4, 2);
            assert!(!matmul(isa, view, &x, 2, &mut dst, Epilogue::default()));
            assert_eq!(dst, [7.0; 8], "four rows are the row kernel's");
        }
    }
}
