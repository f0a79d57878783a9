//! The integer matrix product behind `int8` and every GGML block format: weights decoded to int8
//! in panels of 32 output channels (each group of inputs with its own scale, offset and optional
//! minimum per channel), activations quantized per row and group to int8, sums exact in i32 and
//! scaled to f32 once per group. Four paths, picked at run time: AVX-512 VNNI (`vpdpbusd`, 64
//! multiply-adds an instruction), AVX-VNNI (`vpdpbusd` on 256-bit vectors, 32), AVX2
//! (`vpmaddubsw` + `vpmaddwd` with GGML's sign trick, so no pair sum saturates) and a portable
//! one the compiler vectorises.
//!
//! Panel layout: two sub-panels of 16 channels; within one, each group of 4 consecutive inputs of
//! the 16 channels is 64 contiguous bytes (one 512-bit vector). Activations are stored as
//! `q + 128` (unsigned, as `vpdpbusd` wants); the VNNI paths subtract the `128 * sum(w)` this
//! adds per channel and group, the others undo it before multiplying.

use rayon::prelude::*;

use crate::kernels::epilogue::Epilogue;
use crate::kernels::isa::{Isa, Path};

/// Output channels of one sub-panel (one 512-bit vector of i32 sums).
pub(crate) const PANEL: usize = 16;
/// Output channels of one panel, the unit a task decodes and multiplies.
pub(crate) const TILE_COLS: usize = 2 * PANEL;
/// Rows of one tile of the kernel (6 x 2 accumulators, 6 x 2 f32 sums and the operands fit in
/// the 32 vector registers of AVX-512).
pub(crate) const TILE_ROWS: usize = 6;
/// Rows of activations one task covers (its quantized rows stay in the core's L2 cache).
pub(crate) const TASK_ROWS: usize = 16 * TILE_ROWS;
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

/// Activations quantized per row and group: `q + 128` as u8.
pub(crate) struct QuantizedRows {
    /// `[rows][k_padded]`; padding holds 128 (zero).
    pub(crate) data: Vec<u8>,
    /// `[rows][groups]`: the scale of each group.
    pub(crate) scales: Vec<f32>,
    /// `[rows][groups]`: the scale times the sum of the group's `q` (for weights with minimums);
    /// empty when not asked for.
    pub(crate) scaled_sums: Vec<f32>,
    /// Inputs per row, padded.
    pub(crate) k_padded: usize,
    /// Inputs per group (a multiple of 4).
    pub(crate) group: usize,
    /// Groups per row.
    pub(crate) groups: usize,
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

/// One panel of 32 output channels, decoded to int8 (see the module's layout).
pub(crate) struct Panel<'a> {
    /// Sub-panel 0 at 0, sub-panel 1 at `sub_stride`; each `k_padded / 4` blocks of 64 bytes.
    pub(crate) data: &'a [i8],
    /// Bytes from the first sub-panel to the second.
    pub(crate) sub_stride: usize,
    /// Scale of channel `c` in group `g` at `g * stride + c`.
    pub(crate) scales: &'a [f32],
    /// `128 * sum(q)` of channel `c` in group `g` at `g * stride + c`.
    pub(crate) offsets: &'a [i32],
    /// The minimum added to each weight of channel `c` in group `g`, at `g * stride + c`.
    pub(crate) mins: Option<&'a [f32]>,
    /// `Some(bits)` when every weight is unsigned and below `2^bits` (the block formats but
    /// `q8_0`): the AVX2 path then multiplies without the sign trick and sums several
    /// `vpmaddubsw` results in i16 before widening (none can overflow).
    pub(crate) unsigned_bits: Option<u32>,
    /// Distance between groups in `scales`, `offsets` and `mins`.
    pub(crate) stride: usize,
}

impl Panel<'_> {
    /// Panics (like indexing) unless the panel covers `q`'s inputs.
    fn check(&self, q: &QuantizedRows) {
        let quads = q.k_padded / 4;
        assert!(
            self.data.len() >= self.sub_stride + quads * 64,
            "panel data"
        );
        assert!(self.sub_stride >= quads * 64, "panel stride");
        let need = (q.groups - 1) * self.stride + TILE_COLS;
        assert!(
            self.scales.len() >= need && self.offsets.len() >= need,
            "panel scales"
        );
        if let Some(m) = self.mins {
            assert!(
                m.len() >= need && q.scaled_sums.len() == q.scales.len(),
                "panel mins"
            );
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
    let chunks = rows.div_ceil(TASK_ROWS);
    // Each task writes the rows of its chunk in the columns of its tile: disjoint regions.
    let dst_addr = dst.as_mut_ptr() as usize;
    let run_task = |task: usize| {
        let (chunk, tile) = (task / tiles, task % tiles);
        let mut scratch = S::Scratch::default();
        let panel = source.panel(tile, &mut scratch);
        panel.check(q);
        let row_end = ((chunk + 1) * TASK_ROWS).min(rows);
        let col0 = tile * TILE_COLS;
        let width = TILE_COLS.min(out_dim - col0);
        let mut row = chunk * TASK_ROWS;
        while row < row_end {
            let mr = (row_end - row).min(TILE_ROWS);
            let mut out = [[0f32; TILE_COLS]; TILE_ROWS];
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

/// The f32 sums of rows `row..row + mr` of `q` against the 32 channels of `panel`, on `isa`'s
/// path (an `Isa` exists only for paths this CPU runs).
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
    tile_portable(panel, q, row, mr, out);
}

/// The sums one multiply-add at a time, in an order the compiler vectorises (64 bytes of a
/// sub-panel against 4 inputs).
pub(crate) fn tile_portable(
    panel: &Panel<'_>,
    q: &QuantizedRows,
    row: usize,
    mr: usize,
    out: &mut [[f32; TILE_COLS]; TILE_ROWS],
) {
    let gq = q.group / 4;
    for (r, out_row) in out.iter_mut().enumerate().take(mr) {
        let a_row = &q.data[(row + r) * q.k_padded..(row + r + 1) * q.k_padded];
        let mut sums = [0f32; TILE_COLS];
        for g in 0..q.groups {
            let mut acc = [0i32; TILE_COLS];
            for kq in g * gq..(g + 1) * gq {
                let a: [i32; 4] = std::array::from_fn(|j| a_row[kq * 4 + j] as i32 - 128);
                for (sub, acc_sub) in acc.chunks_exact_mut(PANEL).enumerate() {
                    let at = sub * panel.sub_stride + kq * 64;
                    let w = &panel.data[at..at + 64];
                    for (c, acc_c) in acc_sub.iter_mut().enumerate() {
                        let w4 = &w[c * 4..c * 4 + 4];
                        *acc_c += a[0] * w4[0] as i32
                            + a[1] * w4[1] as i32
                            + a[2] * w4[2] as i32
                            + a[3] * w4[3] as i32;
                    }
                }
            }
            let sa = q.scales[(row + r) * q.groups + g];
            let at = g * panel.stride;
            for (c, s) in sums.iter_mut().enumerate() {
                *s += acc[c] as f32 * panel.scales[at + c] * sa;
                if let Some(mins) = panel.mins {
                    *s += mins[at + c] * q.scaled_sums[(row + r) * q.groups + g];
                }
            }
        }
        *out_row = sums;
    }
}

/// `MR` rows against the panel through `vpdpbusd`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_vnni<const MR: usize>(
    panel: &Panel<'_>,
    q: &QuantizedRows,
    row: usize,
    out: &mut [[f32; TILE_COLS]; TILE_ROWS],
) {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe {
        use std::arch::x86_64::*;
        let gq = q.group / 4;
        let p0 = panel.data.as_ptr();
        let p1 = p0.add(panel.sub_stride);
        let a = q.data.as_ptr().add(row * q.k_padded);
        let mut sums = [[_mm512_setzero_ps(); 2]; MR];
        for g in 0..q.groups {
            let at = g * panel.stride;
            // Each sum starts from minus its `128 * sum(w)` offset: two subtractions per group
            // instead of one per row and vector after it.
            let start = |c: usize| {
                let o = _mm512_loadu_si512(panel.offsets.as_ptr().add(at + c) as *const __m512i);
                _mm512_sub_epi32(_mm512_setzero_si512(), o)
            };
            let mut acc = [[start(0), start(PANEL)]; MR];
            for kq in g * gq..(g + 1) * gq {
                let w0 = _mm512_loadu_si512(p0.add(kq * 64) as *const __m512i);
                let w1 = _mm512_loadu_si512(p1.add(kq * 64) as *const __m512i);
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let four = (a.add(r * q.k_padded + kq * 4) as *const i32).read_unaligned();
                    let av = _mm512_set1_epi32(four);
                    acc_r[0] = _mm512_dpbusd_epi32(acc_r[0], av, w0);
                    acc_r[1] = _mm512_dpbusd_epi32(acc_r[1], av, w1);
                }
            }
            let s0 = _mm512_loadu_ps(panel.scales.as_ptr().add(at));
            let s1 = _mm512_loadu_ps(panel.scales.as_ptr().add(at + PANEL));
            for (r, (sum_r, acc_r)) in sums.iter_mut().zip(&acc).enumerate() {
                let sa = _mm512_set1_ps(*q.scales.get_unchecked((row + r) * q.groups + g));
                let f0 = _mm512_mul_ps(_mm512_cvtepi32_ps(acc_r[0]), s0);
                let f1 = _mm512_mul_ps(_mm512_cvtepi32_ps(acc_r[1]), s1);
                sum_r[0] = _mm512_fmadd_ps(f0, sa, sum_r[0]);
                sum_r[1] = _mm512_fmadd_ps(f1, sa, sum_r[1]);
            }
            if let Some(mins) = panel.mins {
                let m0 = _mm512_loadu_ps(mins.as_ptr().add(at));
                let m1 = _mm512_loadu_ps(mins.as_ptr().add(at + PANEL));
                for (r, sum_r) in sums.iter_mut().enumerate() {
                    let ss = _mm512_set1_ps(*q.scaled_sums.get_unchecked((row + r) * q.groups + g));
                    sum_r[0] = _mm512_fmadd_ps(m0, ss, sum_r[0]);
                    sum_r[1] = _mm512_fmadd_ps(m1, ss, sum_r[1]);
                }
            }
        }
        for (out_r, sum_r) in out.iter_mut().zip(&sums) {
            _mm512_storeu_ps(out_r.as_mut_ptr(), sum_r[0]);
            _mm512_storeu_ps(out_r.as_mut_ptr().add(PANEL), sum_r[1]);
        }
    }
}

/// `vpdpbusd` on 256-bit vectors: `acc + sum(u * s)` of each lane's four unsigned bytes of `u`
/// and signed bytes of `s`.
#[cfg(target_arch = "x86_64")]
pub(crate) trait Dpbusd256 {
    /// The multiply-add.
    unsafe fn dpbusd(
        acc: std::arch::x86_64::__m256i,
        u: std::arch::x86_64::__m256i,
        s: std::arch::x86_64::__m256i,
    ) -> std::arch::x86_64::__m256i;
}

/// AVX-VNNI's VEX-encoded `vpdpbusd`.
#[cfg(target_arch = "x86_64")]
pub(crate) struct VexDpbusd;

#[cfg(target_arch = "x86_64")]
impl Dpbusd256 for VexDpbusd {
    #[inline]
    #[target_feature(enable = "avx2,avxvnni")]
    unsafe fn dpbusd(
        acc: std::arch::x86_64::__m256i,
        u: std::arch::x86_64::__m256i,
        s: std::arch::x86_64::__m256i,
    ) -> std::arch::x86_64::__m256i {
        std::arch::x86_64::_mm256_dpbusd_avx_epi32(acc, u, s)
    }
}

/// AVX-512 VNNI's EVEX-encoded `vpdpbusd` on 256-bit vectors (AVX-512 VL).
#[cfg(target_arch = "x86_64")]
pub(crate) struct EvexDpbusd;

#[cfg(target_arch = "x86_64")]
impl Dpbusd256 for EvexDpbusd {
    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    unsafe fn dpbusd(
        acc: std::arch::x86_64::__m256i,
        u: std::arch::x86_64::__m256i,
        s: std::arch::x86_64::__m256i,
    ) -> std::arch::x86_64::__m256i {
        std::arch::x86_64::_mm256_dpbusd_epi32(acc, u, s)
    }
}

/// `MR` rows against the panel through AVX-VNNI's `vpdpbusd`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avxvnni")]
unsafe fn tile_avx_vnni<const MR: usize>(
    panel: &Panel<'_>,
    q: &QuantizedRows,
    row: usize,
    out: &mut [[f32; TILE_COLS]],
) {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe { tile_vnni256::<MR, VexDpbusd>(panel, q, row, out) }
}

/// `MR` rows against the panel through AVX-512 VNNI's `vpdpbusd` on 256-bit vectors: the
/// AVX-VNNI path's code with the other encoding of its instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512vnni")]
unsafe fn tile_vnni256_evex<const MR: usize>(
    panel: &Panel<'_>,
    q: &QuantizedRows,
    row: usize,
    out: &mut [[f32; TILE_COLS]],
) {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe { tile_vnni256::<MR, EvexDpbusd>(panel, q, row, out) }
}

/// `MR` rows against the panel through 256-bit `vpdpbusd`: the unsigned activations (`q + 128`)
/// times the signed weights, 8 channels of 4 inputs per vector, less the `128 * sum(w)` offsets,
/// in the 16 vector registers of a CPU without AVX-512.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_vnni256<const MR: usize, D: Dpbusd256>(
    panel: &Panel<'_>,
    q: &QuantizedRows,
    row: usize,
    out: &mut [[f32; TILE_COLS]],
) {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe {
        use std::arch::x86_64::*;
        let gq = q.group / 4;
        let base = panel.data.as_ptr();
        let a = q.data.as_ptr().add(row * q.k_padded);
        // The four 256-bit vectors of one quad: channels 0-7, 8-15 (sub-panel 0), 16-23, 24-31.
        let starts = [0, 32, panel.sub_stride, panel.sub_stride + 32];
        let mut sums = [[_mm256_setzero_ps(); 4]; MR];
        for g in 0..q.groups {
            let at = g * panel.stride;
            // Each sum starts from minus its `128 * sum(w)` offset, as in `tile_vnni`.
            let start = |v: usize| {
                let o =
                    _mm256_loadu_si256(panel.offsets.as_ptr().add(at + v * 8) as *const __m256i);
                _mm256_sub_epi32(_mm256_setzero_si256(), o)
            };
            let mut acc = [[start(0), start(1), start(2), start(3)]; MR];
            for kq in g * gq..(g + 1) * gq {
                let mut av = [_mm256_setzero_si256(); MR];
                for (r, av_r) in av.iter_mut().enumerate() {
                    let four = (a.add(r * q.k_padded + kq * 4) as *const i32).read_unaligned();
                    *av_r = _mm256_set1_epi32(four);
                }
                for (v, start) in starts.iter().enumerate() {
                    let w = _mm256_loadu_si256(base.add(start + kq * 64) as *const __m256i);
                    for (acc_r, av_r) in acc.iter_mut().zip(&av) {
                        acc_r[v] = D::dpbusd(acc_r[v], *av_r, w);
                    }
                }
            }
            add_group_avx2(panel, q, row, g, &acc, &mut sums);
        }
        store_avx2(&sums, out);
    }
}

/// `MR` rows against the panel through `vpmaddubsw` + `vpmaddwd`: `|w|` times the activation
/// with the sign of `w` (GGML's trick: both at most 127 in magnitude, so no pair sum of
/// `vpmaddubsw` saturates), 8 channels of 4 inputs per 256-bit vector.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const MR: usize>(
    panel: &Panel<'_>,
    q: &QuantizedRows,
    row: usize,
    out: &mut [[f32; TILE_COLS]],
) {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe {
        use std::arch::x86_64::*;
        let gq = q.group / 4;
        let base = panel.data.as_ptr();
        let a = q.data.as_ptr().add(row * q.k_padded);
        let ones = _mm256_set1_epi16(1);
        let flip = 0x8080_8080u32 as i32;
        // The four 256-bit vectors of one quad: channels 0-7, 8-15 (sub-panel 0), 16-23, 24-31.
        let starts = [0, 32, panel.sub_stride, panel.sub_stride + 32];
        let mut sums = [[_mm256_setzero_ps(); 4]; MR];
        for g in 0..q.groups {
            let mut acc = [[_mm256_setzero_si256(); 4]; MR];
            for kq in g * gq..(g + 1) * gq {
                let mut av = [_mm256_setzero_si256(); MR];
                for (r, av_r) in av.iter_mut().enumerate() {
                    let four = (a.add(r * q.k_padded + kq * 4) as *const i32).read_unaligned();
                    *av_r = _mm256_set1_epi32(four ^ flip);
                }
                for (v, start) in starts.iter().enumerate() {
                    let w = _mm256_loadu_si256(base.add(start + kq * 64) as *const __m256i);
                    let w_abs = _mm256_abs_epi8(w);
                    for (acc_r, av_r) in acc.iter_mut().zip(&av) {
                        let signed = _mm256_sign_epi8(*av_r, w);
                        let pairs = _mm256_maddubs_epi16(w_abs, signed);
                        acc_r[v] = _mm256_add_epi32(acc_r[v], _mm256_madd_epi16(pairs, ones));
                    }
                }
            }
            add_group_avx2(panel, q, row, g, &acc, &mut sums);
        }
        store_avx2(&sums, out);
    }
}

/// `MR` rows against a panel of unsigned weights below `2^bits` through `vpmaddubsw` (weights
/// as the unsigned operand, activations signed) without the sign trick: up to
/// `32767 / (2 x (2^bits - 1) x 127)` products of consecutive quads are summed in i16 before
/// `vpmaddwd` widens them (8 for 4-bit weights, 4 for 5-bit, 2 for 6-bit).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2_unsigned<const MR: usize>(
    panel: &Panel<'_>,
    q: &QuantizedRows,
    row: usize,
    out: &mut [[f32; TILE_COLS]],
    bits: u32,
) {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe {
        use std::arch::x86_64::*;
        let gq = q.group / 4;
        let depth = (32767 / (2 * ((1usize << bits) - 1) * 127)).clamp(1, gq);
        let base = panel.data.as_ptr();
        let a = q.data.as_ptr().add(row * q.k_padded);
        let ones = _mm256_set1_epi16(1);
        let flip = 0x8080_8080u32 as i32;
        let starts = [0, 32, panel.sub_stride, panel.sub_stride + 32];
        let mut sums = [[_mm256_setzero_ps(); 4]; MR];
        for g in 0..q.groups {
            let mut acc = [[_mm256_setzero_si256(); 4]; MR];
            let mut kq = g * gq;
            while kq < (g + 1) * gq {
                let end = (kq + depth).min((g + 1) * gq);
                let mut short = [[_mm256_setzero_si256(); 4]; MR];
                while kq < end {
                    let mut av = [_mm256_setzero_si256(); MR];
                    for (r, av_r) in av.iter_mut().enumerate() {
                        let four = (a.add(r * q.k_padded + kq * 4) as *const i32).read_unaligned();
                        *av_r = _mm256_set1_epi32(four ^ flip);
                    }
                    for (v, start) in starts.iter().enumerate() {
                        let w = _mm256_loadu_si256(base.add(start + kq * 64) as *const __m256i);
                        for (short_r, av_r) in short.iter_mut().zip(&av) {
                            short_r[v] =
                                _mm256_add_epi16(short_r[v], _mm256_maddubs_epi16(w, *av_r));
                        }
                    }
                    kq += 1;
                }
                for (acc_r, short_r) in acc.iter_mut().zip(&short) {
                    for v in 0..4 {
                        acc_r[v] = _mm256_add_epi32(acc_r[v], _mm256_madd_epi16(short_r[v], ones));
                    }
                }
            }
            add_group_avx2(panel, q, row, g, &acc, &mut sums);
        }
        store_avx2(&sums, out);
    }
}

/// Adds group `g`'s i32 sums of `MR` rows (4 vectors of 8 channels each) to their f32 sums: times
/// the channels' scales and the rows' activation scales, plus minimum x scaled activation sum.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn add_group_avx2<const MR: usize>(
    panel: &Panel<'_>,
    q: &QuantizedRows,
    row: usize,
    g: usize,
    acc: &[[std::arch::x86_64::__m256i; 4]; MR],
    sums: &mut [[std::arch::x86_64::__m256; 4]; MR],
) {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe {
        use std::arch::x86_64::*;
        let at = g * panel.stride;
        for (r, (sum_r, acc_r)) in sums.iter_mut().zip(acc).enumerate() {
            let sa = _mm256_set1_ps(*q.scales.get_unchecked((row + r) * q.groups + g));
            let ss = panel
                .mins
                .map(|_| _mm256_set1_ps(*q.scaled_sums.get_unchecked((row + r) * q.groups + g)));
            for v in 0..4 {
                let s = _mm256_loadu_ps(panel.scales.as_ptr().add(at + v * 8));
                let f = _mm256_mul_ps(_mm256_cvtepi32_ps(acc_r[v]), s);
                sum_r[v] = _mm256_fmadd_ps(f, sa, sum_r[v]);
                if let (Some(mins), Some(ss)) = (panel.mins, ss) {
                    let m = _mm256_loadu_ps(mins.as_ptr().add(at + v * 8));
                    sum_r[v] = _mm256_fmadd_ps(m, ss, sum_r[v]);
                }
            }
        }
    }
}

/// Stores the f32 sums of `MR` rows (4 vectors of 8 channels each) into `out`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store_avx2<const MR: usize>(
    sums: &[[std::arch::x86_64::__m256; 4]; MR],
    out: &mut [[f32; TILE_COLS]],
) {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe {
        use std::arch::x86_64::*;
        for (out_r, sum_r) in out.iter_mut().zip(sums) {
            for (v, s) in sum_r.iter().enumerate() {
                _mm256_storeu_ps(out_r.as_mut_ptr().add(v * 8), *s);
            }
        }
    }
}

/// Quantizes one span symmetrically to `q + 128`; returns its scale (0 for an all-zero span).
pub(crate) fn quantize_span(x: &[f32], q: &mut [u8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if Isa::get().avx512() {
        // SAFETY: the CPU has AVX-512 F (detected at run time).
        return unsafe { crate::kernels::avx512::quantize_span(x, q) };
    }
    #[cfg(target_arch = "x86_64")]
    if Isa::get().avx2_fma() {
        // SAFETY: the CPU has AVX2 (detected at run time).
        return unsafe { quantize_span_avx2(x, q) };
    }
    quantize_span_portable(x, q)
}

/// [`quantize_span`] on 256-bit vectors, 32 inputs a step, the rest through [`quantized`] as the
/// portable code does; `vcvtps2dq` rounds half to even, as `round_ties_even` does, so the bytes
/// are the same.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn quantize_span_avx2(x: &[f32], q: &mut [u8]) -> f32 {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe {
        use std::arch::x86_64::*;
        let n = x.len().min(q.len());
        let (x, q) = (&x[..n], &mut q[..n]);
        let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let mut maxv = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            let v = _mm256_loadu_ps(x.as_ptr().add(i));
            maxv = _mm256_max_ps(maxv, _mm256_and_ps(v, magnitude));
            i += 8;
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), maxv);
        let max = x[i..]
            .iter()
            .fold(lanes.iter().fold(0f32, |m, v| m.max(*v)), |m, v| {
                m.max(v.abs())
            });
        if max == 0.0 {
            return 0.0;
        }
        let inv = 127.0 / max;
        let invv = _mm256_set1_ps(inv);
        let flip = _mm256_set1_epi8(-128);
        // packs interleave the 128-bit lanes; this puts the 32 bytes back in order.
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let mut i = 0;
        while i + 32 <= n {
            let r = |at: usize| {
                _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i + at)), invv))
            };
            let words = _mm256_packs_epi16(
                _mm256_packs_epi32(r(0), r(8)),
                _mm256_packs_epi32(r(16), r(24)),
            );
            let bytes = _mm256_xor_si256(_mm256_permutevar8x32_epi32(words, order), flip);
            _mm256_storeu_si256(q.as_mut_ptr().add(i) as *mut __m256i, bytes);
            i += 32;
        }
        for (d, v) in q[i..].iter_mut().zip(&x[i..]) {
            *d = quantized(*v, inv);
        }
        max / 127.0
    }
}

/// [`quantize_span`] without intrinsics.
pub(crate) fn quantize_span_portable(x: &[f32], q: &mut [u8]) -> f32 {
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max == 0.0 {
        return 0.0;
    }
    let inv = 127.0 / max;
    for (d, v) in q.iter_mut().zip(x) {
        *d = quantized(*v, inv);
    }
    max / 127.0
}

/// One value times `inv`, rounded half to even, as `q + 128`.
#[inline(always)]
fn quantized(v: f32, inv: f32) -> u8 {
    ((v * inv).round_ties_even().clamp(-127.0, 127.0) as i32 + 128) as u8
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
