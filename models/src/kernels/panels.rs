//! The task scheme of slimbench's floating-point tile kernels (f32, f16 and bf16 tiles, and
//! AVX2's f32 dot tiles): equal chunks of rows, in whole tiles, by panels of 32 output channels;
//! each task packs its panel once for all its tiles and stores each tile through the epilogue
//! ([`run_tiles`]), or orders its work itself and stores its sums once ([`run_chunks`]), so the
//! output is written once.

use std::ops::Range;

use rayon::prelude::*;

use crate::kernels::epilogue::Epilogue;
use crate::kernels::qgemm::worth_threads;

/// Output channels of one panel (two vectors of 16 f32 sums).
pub(crate) const TILE_COLS: usize = 32;
/// Rows of one tile: 8 x 2 accumulators, two weight vectors and a broadcast fit the 32 vector
/// registers of AVX-512.
pub(crate) const TILE_ROWS: usize = 8;
/// Rows one task covers at most: a sequence of 128 tokens is one chunk, so each panel of the
/// weight is packed (read from memory) once a product, and its activations stay in the core's L2
/// cache while it walks the panel. With 96 (two chunks at 128 tokens, every panel read twice)
/// MiniLM fp32 at batch 1 took 15.5-22.7 ms against 12.6-13.3 (Zen 5, interleaved runs).
const TASK_ROWS: usize = 16 * TILE_ROWS;

/// The f32 sums of one tile: `TILE_ROWS` rows of `TILE_COLS` channels.
pub(crate) type TileSums = [[f32; TILE_COLS]; TILE_ROWS];

/// `dst = epilogue(sums)` for a `rows x n` product with `k` inputs: `pack(col0, width)` packs the
/// panel of channels `col0..col0 + width` (`width <= 32`) for one task, and `tile(&panel, row,
/// mr, &mut sums)` fills the first `mr <= 8` rows of `sums` with the products of rows
/// `row..row + mr` against it. On the thread pool when the product is worth it.
pub(crate) fn run_tiles<P>(
    (rows, k, n): (usize, usize, usize),
    dst: &mut [f32],
    epilogue: Epilogue<'_>,
    pack: impl Fn(usize, usize) -> P + Sync,
    tile: impl Fn(&P, usize, usize, &mut TileSums) + Sync,
) {
    assert_eq!(dst.len(), rows * n, "output shape");
    epilogue.check(rows, n);
    let parallel = worth_threads(rows, k, n);
    // SAFETY: `dst` holds the `rows x n` output (asserted above) and is borrowed mutably.
    unsafe {
        run_tiles_into(
            (rows, n),
            dst.as_mut_ptr(),
            n,
            epilogue,
            parallel,
            pack,
            tile,
        )
    }
}

/// [`run_tiles`] into a `rows x n` output whose rows lie `dst_stride` elements apart from `dst`
/// (a head's columns of attention's context), on the thread pool when `parallel`. A residual in
/// the epilogue is read with the same row stride.
///
/// # Safety
/// `dst` must be valid for writes of `rows` rows of `n` elements `dst_stride` apart, and no other
/// thread may touch them during the call.
pub(crate) unsafe fn run_tiles_into<P>(
    (rows, n): (usize, usize),
    dst: *mut f32,
    dst_stride: usize,
    epilogue: Epilogue<'_>,
    parallel: bool,
    pack: impl Fn(usize, usize) -> P + Sync,
    tile: impl Fn(&P, usize, usize, &mut TileSums) + Sync,
) {
    let tasks = Tasks::new(rows, n);
    let dst_addr = dst as usize;
    tasks.run(parallel, |task| {
        let (chunk, col0, width) = tasks.get(task);
        let packed = pack(col0, width);
        // Each tile writes the rows it stores; zeroed once a task, not once a tile.
        let mut sums = [[0f32; TILE_COLS]; TILE_ROWS];
        let mut row = chunk.start;
        while row < chunk.end {
            let mr = (chunk.end - row).min(TILE_ROWS);
            tile(&packed, row, mr, &mut sums);
            // SAFETY: the tile's rows and columns lie in the output the caller vouches for, and
            // no other task writes them.
            unsafe {
                epilogue.store(
                    &sums[..mr],
                    dst_addr as *mut f32,
                    row,
                    col0,
                    width,
                    dst_stride,
                )
            };
            row += mr;
        }
    });
}

/// `dst = epilogue(sums)` for a `rows x n` product with `k` inputs over [`run_tiles`]' tasks,
/// for a kernel that orders a task's work itself: `chunk(rows, col0, width, &mut sums)` fills
/// `sums[r - rows.start][..width]` with the products of row `r` against channels `col0..col0 +
/// width` for each row of the range, and the task stores them once. On the thread pool when the
/// product is worth it.
pub(crate) fn run_chunks(
    (rows, k, n): (usize, usize, usize),
    dst: &mut [f32],
    epilogue: Epilogue<'_>,
    chunk: impl Fn(Range<usize>, usize, usize, &mut [[f32; TILE_COLS]]) + Sync,
) {
    assert_eq!(dst.len(), rows * n, "output shape");
    epilogue.check(rows, n);
    let tasks = Tasks::new(rows, n);
    let dst_addr = dst.as_mut_ptr() as usize;
    tasks.run(worth_threads(rows, k, n), |task| {
        let (range, col0, width) = tasks.get(task);
        let mut sums = vec![[0f32; TILE_COLS]; range.len()];
        let row = range.start;
        chunk(range, col0, width, &mut sums);
        // SAFETY: the task's rows and columns lie in `dst` (asserted above), borrowed mutably,
        // and no other task writes them.
        unsafe { epilogue.store(&sums, dst_addr as *mut f32, row, col0, width, n) };
    });
}

/// The tasks of a `rows x n` product: equal chunks of rows, in whole tiles (MiniLM's 128 tokens
/// are two of 64, not 96 and 32), by panels of [`TILE_COLS`] channels.
#[derive(Debug, Clone, Copy)]
struct Tasks {
    rows: usize,
    n: usize,
    chunk_rows: usize,
    panels: usize,
    count: usize,
}

impl Tasks {
    fn new(rows: usize, n: usize) -> Self {
        if rows == 0 || n == 0 {
            return Self {
                rows,
                n,
                chunk_rows: 1,
                panels: 0,
                count: 0,
            };
        }
        let panels = n.div_ceil(TILE_COLS);
        let chunks = rows.div_ceil(TASK_ROWS);
        let chunk_rows = rows.div_ceil(chunks).next_multiple_of(TILE_ROWS);
        let chunks = rows.div_ceil(chunk_rows);
        Self {
            rows,
            n,
            chunk_rows,
            panels,
            count: chunks * panels,
        }
    }

    /// Task `task`'s rows, first channel and number of channels.
    fn get(&self, task: usize) -> (Range<usize>, usize, usize) {
        let (chunk, panel) = (task / self.panels, task % self.panels);
        let col0 = panel * TILE_COLS;
        let start = chunk * self.chunk_rows;
        let end = (start + self.chunk_rows).min(self.rows);
        (start..end, col0, TILE_COLS.min(self.n - col0))
    }

    /// Runs `task` for every task, on the thread pool if `parallel` and there are several.
    fn run(&self, parallel: bool, task: impl Fn(usize) + Sync + Send) {
        if parallel && self.count > 1 {
            (0..self.count).into_par_iter().for_each(task);
        } else {
            (0..self.count).for_each(task);
        }
    }
}

/// Calls `$kernel::<MR>($args)` for the tile's row count `$mr` (1 to 8): each count compiled with
/// its accumulators in registers.
macro_rules! by_tile_rows {
    ($mr:expr, $kernel:ident($($arg:expr),* $(,)?)) => {
        match $mr {
            8 => $kernel::<8>($($arg),*),
            7 => $kernel::<7>($($arg),*),
            6 => $kernel::<6>($($arg),*),
            5 => $kernel::<5>($($arg),*),
            4 => $kernel::<4>($($arg),*),
            3 => $kernel::<3>($($arg),*),
            2 => $kernel::<2>($($arg),*),
            _ => $kernel::<1>($($arg),*),
        }
    };
}
pub(crate) use by_tile_rows;

/// What the tile kernels' tests share: deterministic inputs in [-1, 1).
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let v = (i as u64 * 2654435761 + seed * 97) % 1000;
            v as f32 / 500.0 - 1.0
        })
        .collect()
}

/// What the f32 kernels' tests check: `matmul(x, w, n, dst, epilogue)` (a Linear's product of
/// `x` by the `n x k` weight `w`, as [`crate::kernels::f32_tile`] and
/// [`crate::kernels::f32_dots`] take it) equals the straightforward product for a `rows x k` by
/// `n x k` weight of test values, to 1e-4 of each sum's size.
#[cfg(test)]
pub(crate) fn assert_f32_matmul_matches(
    (rows, k, n): (usize, usize, usize),
    matmul: impl Fn(crate::kernels::sgemm::MatRef<'_>, &[f32], usize, &mut [f32], Epilogue<'_>) -> bool,
) {
    use crate::kernels::sgemm::MatRef;
    let w = test_values(n * k, 2);
    let product = |x: &[f32], dst: &mut [f32]| {
        matmul(MatRef::new(x, rows, k), &w, n, dst, Epilogue::default())
    };
    let weight = |p: usize, c: usize| w[c * k + p] as f64;
    assert_matches_straightforward((rows, k, n), |v| v as f64, weight, product, 1e-4);
}

/// What the tile kernels' tests check: `product(x, dst)` (rows of `x`, `k` wide, into the `rows x
/// n` `dst`; `false` when it declined) equals the straightforward sums of `round(x)` times
/// `weight(input, channel)`, in f64, to `tolerance` relative to each sum's size.
#[cfg(test)]
pub(crate) fn assert_matches_straightforward(
    (rows, k, n): (usize, usize, usize),
    round: impl Fn(f32) -> f64,
    weight: impl Fn(usize, usize) -> f64,
    product: impl Fn(&[f32], &mut [f32]) -> bool,
    tolerance: f64,
) {
    let x = test_values(rows * k, rows as u64);
    let mut dst = vec![f32::NAN; rows * n];
    assert!(
        product(&x, &mut dst),
        "the kernel declined a product it runs"
    );
    for r in 0..rows {
        for c in 0..n {
            let want: f64 = (0..k).map(|p| round(x[r * k + p]) * weight(p, c)).sum();
            let got = dst[r * n + c] as f64;
            assert!(
                (got - want).abs() < tolerance * (1.0 + want.abs()),
                "{rows}x{k}x{n}, row {r}, channel {c}: {got} vs {want}"
            );
        }
    }
}
