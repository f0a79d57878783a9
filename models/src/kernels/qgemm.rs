//! The integer matrix product behind `int8` and every GGML block format: weights decoded to int8
//! in panels of 32 output channels (each group of inputs with its own scale, offset and optional
//! minimum per channel), activations quantized per row and group to int8, sums exact in i32 and
//! scaled to f32 once per group. Four paths, picked at run time: AVX-512 VNNI (`vpdpbusd`, 64
//! multiply-adds an instruction), AVX-VNNI (`vpdpbusd` on 256-bit vectors, 32), AVX2
//! (`vpmaddubsw` + `vpmaddwd` with GGML's sign trick, so no pair sum saturates) and a portable
//! one the compiler vectorises; their tiles live by instruction set (`kernels::x86::{avx512,
//! avx_vnni, avx2}`, `kernels::portable`), and this module packs, dispatches and threads.
//!
//! Panel layout: two sub-panels of 16 channels; within one, each group of 4 consecutive inputs of
//! the 16 channels is 64 contiguous bytes (one 512-bit vector). Activations are stored as
//! `q + 128` (unsigned, as `vpdpbusd` wants); the VNNI paths subtract the `128 * sum(w)` this
//! adds per channel and group, the others undo it before multiplying.

use rayon::prelude::*;

use crate::kernels::epilogue::Epilogue;
pub(crate) use crate::kernels::int_tile::{Panel, QuantizedRows, PANEL, TILE_COLS, TILE_ROWS};
use crate::kernels::isa::{Isa, Path};
#[cfg(target_arch = "x86_64")]
use crate::kernels::x86::avx2::{tile_avx2, tile_avx2_unsigned};
#[cfg(target_arch = "x86_64")]
use crate::kernels::x86::avx512::tile_vnni;
#[cfg(target_arch = "x86_64")]
use crate::kernels::x86::avx_vnni::{tile_avx_vnni, tile_vnni256_evex};

/// Rows of activations one task covers at most (its quantized rows stay in the core's L2
/// cache): a sequence of 128 tokens is one chunk, so each panel of the weight is read from memory
/// (and a block format's panel decoded) once a product, not twice as with 96.
pub(crate) const TASK_ROWS: usize = 22 * TILE_ROWS;
/// Multiply-adds below which a product runs on the calling thread: waking the pool costs more
/// than the work (a digits layer at batch 1 is 16k).
pub(crate) const PARALLEL_MIN_MACS: usize = 1 << 20;
/// Rows up to which a product is a few one-row products, each reading the whole weight from
/// memory (memory-bound: the block formats run their one-row kernels on the blocks); more rows
/// are tiled (compute-bound).
pub const ONE_ROW_MAX_ROWS: usize = 4;
/// Multiply-adds per row above which a product of up to [`ONE_ROW_MAX_ROWS`] rows is split over
/// the thread pool: its weight streams from memory, and two cores read faster than one.
const ONE_ROW_PARALLEL_MIN_MACS: usize = 1 << 18;

/// Whether a product of `rows` rows by a `k x n` weight is worth the thread pool: from
/// [`PARALLEL_MIN_MACS`] multiply-adds, or from [`ONE_ROW_PARALLEL_MIN_MACS`] a row for up to
/// [`ONE_ROW_MAX_ROWS`] rows.
pub(crate) fn worth_threads(rows: usize, k: usize, n: usize) -> bool {
    rows * k * n >= PARALLEL_MIN_MACS
        || (rows <= ONE_ROW_MAX_ROWS && k * n >= ONE_ROW_PARALLEL_MIN_MACS)
}

/// Rounds `n` up to a multiple of `to`.
pub(crate) fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

impl QuantizedRows {
    /// Quantizes `rows` rows of `x` (`rows x in_dim`) symmetrically per group of `group` inputs.
    pub(crate) fn quantize(
        x: &[f32],
        rows: usize,
        in_dim: usize,
        group: usize,
        with_sums: bool,
        parallel: bool,
    ) -> Self {
        let groups = in_dim.div_ceil(group).max(1);
        let k_padded = groups * group;
        let mut data = vec![128u8; rows * k_padded];
        let mut scales = vec![0f32; rows * groups];
        let mut scaled_sums = vec![0f32; if with_sums { rows * groups } else { 0 }];
        let quantize_row = |((q_row, s_row), x_row): ((&mut [u8], &mut [f32]), &[f32])| {
            for (g, scale) in s_row.iter_mut().enumerate() {
                let start = (g * group).min(in_dim);
                let end = ((g + 1) * group).min(in_dim);
                *scale = quantize_span(&x_row[start..end], &mut q_row[start..end]);
            }
        };
        if parallel {
            data.par_chunks_mut(k_padded)
                .zip(scales.par_chunks_mut(groups))
                .zip(x.par_chunks(in_dim))
                .for_each(quantize_row);
        } else {
            data.chunks_mut(k_padded)
                .zip(scales.chunks_mut(groups))
                .zip(x.chunks(in_dim))
                .for_each(quantize_row);
        }
        if with_sums {
            for (i, s) in scaled_sums.iter_mut().enumerate() {
                let (row, g) = (i / groups, i % groups);
                let span = &data[row * k_padded + g * group..row * k_padded + (g + 1) * group];
                let sum: i32 = span.iter().map(|&v| v as i32 - 128).sum();
                *s = sum as f32 * scales[i];
            }
        }
        Self {
            data,
            scales,
            scaled_sums,
            k_padded,
            group,
            groups,
        }
    }
}

/// What a weight hands the product: the panel of each tile of 32 channels, decoded into the
/// task's scratch where the weight is stored otherwise.
pub(crate) trait PanelSource: Sync {
    /// A task's buffer to decode a panel into.
    type Scratch: Default;
    /// Output channels.
    fn out_dim(&self) -> usize;
    /// The panel of channels `32 * tile ..`.
    fn panel<'a>(&'a self, tile: usize, scratch: &'a mut Self::Scratch) -> Panel<'a>;
}

/// `dst = epilogue(x W^T)` for the `rows` rows of `q` into `dst` (`rows x out_dim`), in tasks of
/// [`TASK_ROWS`] rows by one panel; on the thread pool when `parallel`. Each tile of sums gets its
/// bias, residual and GELU as it is stored, so `dst` is written once and never read.
pub(crate) fn matmul<S: PanelSource>(
    source: &S,
    q: &QuantizedRows,
    rows: usize,
    dst: &mut [f32],
    epilogue: Epilogue<'_>,
    parallel: bool,
) {
    let out_dim = source.out_dim();
    assert_eq!(dst.len(), rows * out_dim, "output shape");
    epilogue.check(rows, out_dim);
    if rows == 0 || out_dim == 0 {
        return;
    }
    let isa = Isa::get();
    let tiles = out_dim.div_ceil(TILE_COLS);
    // Chunks of equal rows in whole tiles (at 200 rows two of 102 and 98, not 132 and 68).
    let chunk_rows = rows
        .div_ceil(rows.div_ceil(TASK_ROWS))
        .next_multiple_of(TILE_ROWS);
    let chunks = rows.div_ceil(chunk_rows);
    // Each task writes the rows of its chunk in the columns of its tile: disjoint regions.
    let dst_addr = dst.as_mut_ptr() as usize;
    let run_task = |task: usize| {
        let (chunk, tile) = (task / tiles, task % tiles);
        let mut scratch = S::Scratch::default();
        let panel = source.panel(tile, &mut scratch);
        panel.check(q);
        let row_end = ((chunk + 1) * chunk_rows).min(rows);
        let col0 = tile * TILE_COLS;
        let width = TILE_COLS.min(out_dim - col0);
        let mut row = chunk * chunk_rows;
        // Each tile writes the rows it stores; zeroed once a task, not once a tile.
        let mut out = [[0f32; TILE_COLS]; TILE_ROWS];
        while row < row_end {
            let mr = (row_end - row).min(TILE_ROWS);
            tile_sums(&panel, q, row, mr, &mut out, isa);
            // SAFETY: the tile's rows and columns lie in `dst` and no other task writes them.
            unsafe { epilogue.store(&out[..mr], dst_addr as *mut f32, row, col0, width, out_dim) };
            row += mr;
        }
    };
    if parallel {
        (0..chunks * tiles).into_par_iter().for_each(run_task);
    } else {
        (0..chunks * tiles).for_each(run_task);
    }
}

/// The f32 sums of rows `row..row + mr` of `q` against the 32 channels of `panel`, written over
/// the first `mr` rows of `out` (whatever they held), on `isa`'s path (an `Isa` exists only for
/// paths this CPU runs).
pub(crate) fn tile_sums(
    panel: &Panel<'_>,
    q: &QuantizedRows,
    row: usize,
    mr: usize,
    out: &mut [[f32; TILE_COLS]; TILE_ROWS],
    isa: Isa,
) {
    assert!(
        mr <= TILE_ROWS && (row + mr) * q.k_padded <= q.data.len(),
        "tile rows"
    );
    #[cfg(target_arch = "x86_64")]
    match isa.path() {
        Path::Avx512Vnni => {
            // SAFETY: the CPU has AVX-512 F/BW and VNNI (`isa` was made by detection); the rows lie
            // inside `q` (asserted above) and the panel covers its inputs (`Panel::check`).
            unsafe {
                match mr {
                    6 => tile_vnni::<6>(panel, q, row, out),
                    5 => tile_vnni::<5>(panel, q, row, out),
                    4 => tile_vnni::<4>(panel, q, row, out),
                    3 => tile_vnni::<3>(panel, q, row, out),
                    2 => tile_vnni::<2>(panel, q, row, out),
                    _ => tile_vnni::<1>(panel, q, row, out),
                }
            }
            return;
        }
        path @ (Path::AvxVnni | Path::AvxVnniEvex) => {
            let vex = path == Path::AvxVnni;
            let mut r = 0;
            while r < mr {
                let rows = &mut out[r..(r + 2).min(mr)];
                // SAFETY: the CPU has AVX2 and AVX-VNNI (`vex`) or AVX-512 VNNI and VL (`isa`
                // was made by detection); as for VNNI above.
                unsafe {
                    match (vex, rows.len()) {
                        (true, 2) => tile_avx_vnni::<2>(panel, q, row + r, rows),
                        (true, _) => tile_avx_vnni::<1>(panel, q, row + r, rows),
                        (false, 2) => tile_vnni256_evex::<2>(panel, q, row + r, rows),
                        (false, _) => tile_vnni256_evex::<1>(panel, q, row + r, rows),
                    }
                }
                r += 2;
            }
            return;
        }
        // AVX-512 without VNNI multiplies bytes as AVX2 does.
        Path::Avx2 | Path::Avx512 => {
            let mut r = 0;
            while r < mr {
                let rows = &mut out[r..(r + 2).min(mr)];
                // SAFETY: the CPU has AVX2 (`isa` was made by detection); as for VNNI above.
                unsafe {
                    match (panel.unsigned_bits, rows.len()) {
                        (Some(bits), 2) => tile_avx2_unsigned::<2>(panel, q, row + r, rows, bits),
                        (Some(bits), _) => tile_avx2_unsigned::<1>(panel, q, row + r, rows, bits),
                        (None, 2) => tile_avx2::<2>(panel, q, row + r, rows),
                        (None, _) => tile_avx2::<1>(panel, q, row + r, rows),
                    }
                }
                r += 2;
            }
            return;
        }
        Path::Portable => {}
    }
    let _ = isa;
    crate::kernels::portable::tile_portable(panel, q, row, mr, out);
}

/// Quantizes one span symmetrically to `q + 128`; returns its scale (0 for an all-zero span).
pub(crate) fn quantize_span(x: &[f32], q: &mut [u8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if Isa::get().avx512() {
        // SAFETY: the CPU has AVX-512 F (detected at run time).
        return unsafe { crate::kernels::x86::avx512::quantize_span(x, q) };
    }
    #[cfg(target_arch = "x86_64")]
    if Isa::get().avx2_fma() {
        // SAFETY: the CPU has AVX2 (detected at run time).
        return unsafe { crate::kernels::x86::avx2::quantize_span_avx2(x, q) };
    }
    crate::kernels::portable::quantize_span_portable(x, q)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every path this CPU can run, whatever `SLIMBENCH_KERNELS` says: tests compare them all,
    /// and say which they could not run here.
    pub(crate) fn paths_here() -> Vec<Isa> {
        let paths = Isa::available();
        let names: Vec<&str> = paths.iter().map(|p| p.name()).collect();
        for (wanted, why) in [
            ("avx2", "this CPU has no AVX2 and FMA"),
            ("avx512-vnni", "this CPU has no AVX-512 VNNI"),
            (
                "avx-vnni",
                "this CPU has no AVX-VNNI (its code runs with AVX-512 VNNI's EVEX form of the \
                 instruction, avx-vnni-evex, where the CPU has that)",
            ),
        ] {
            if !names.contains(&wanted) {
                eprintln!("the {wanted} path is not tested: {why}");
            }
        }
        paths
    }
}
