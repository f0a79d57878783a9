//! int8 matrix products: weights quantized symmetrically per output channel (optionally per
//! group of inputs), activations quantized per row (and group) when the product runs, products
//! summed exactly in i32 and scaled back to f32 once per group. On CPUs with AVX-512 VNNI one
//! `vpdpbusd` does 64 multiply-adds; elsewhere a portable kernel computes the same sums.
//!
//! Layout: the weight is packed in panels of 16 output channels; within a panel, each group of 4
//! consecutive inputs of the 16 channels is 64 contiguous bytes, one 512-bit vector. Activations
//! are stored as `q + 128` (unsigned, as `vpdpbusd` wants); the `128 * sum(w)` this adds is
//! subtracted per channel and group.

use rayon::prelude::*;

use crate::kernels::epilogue::Epilogue;
use crate::kernels::CpuFeatures;

/// Output channels of one packed panel (one 512-bit vector of i32 sums).
const PANEL: usize = 16;
/// Output channels of one tile of the kernel (two panels).
pub(crate) const TILE_COLS: usize = 2 * PANEL;
/// Rows of one tile of the kernel (6 x 2 accumulators, 6 x 2 f32 sums and the operands fit in
/// the 32 vector registers).
pub(crate) const TILE_ROWS: usize = 6;
/// Rows of activations one task covers (its quantized rows stay in the core's L2 cache).
pub(crate) const TASK_ROWS: usize = 16 * TILE_ROWS;

/// A weight matrix (`out x in`) quantized to int8 and packed for the kernel.
#[derive(Debug, Clone)]
pub struct Int8Matrix {
    out_dim: usize,
    in_dim: usize,
    group: usize,
    groups: usize,
    k_padded: usize,
    n_padded: usize,
    packed: Vec<i8>,
    /// `[groups][n_padded]`: the scale of each channel in each group.
    scales: Vec<f32>,
    /// `[groups][n_padded]`: `128 * sum(q)` of each channel in each group.
    offsets: Vec<i32>,
}

/// Activations quantized per row and group: `q + 128` as u8, `[rows][k_padded]`.
struct QuantizedRows {
    data: Vec<u8>,
    /// `[rows][groups]`.
    scales: Vec<f32>,
}

/// Multiply-adds below which a product runs on the calling thread (see `worth_threads`).
const PARALLEL_MIN_MACS: usize = 1 << 20;

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

impl Int8Matrix {
    /// Quantizes a row-major `out_dim x in_dim` weight. `group` inputs share a scale (rounded up
    /// to a multiple of 4); `None` gives one scale per output channel.
    pub fn quantize(weight: &[f32], out_dim: usize, in_dim: usize, group: Option<usize>) -> Self {
        assert_eq!(weight.len(), out_dim * in_dim, "weight shape");
        let group = round_up(group.unwrap_or(in_dim).clamp(1, in_dim.max(1)), 4);
        let groups = in_dim.div_ceil(group).max(1);
        let k_padded = groups * group;
        let n_padded = round_up(out_dim.max(1), TILE_COLS);
        let kq = k_padded / 4;
        let mut packed = vec![0i8; n_padded * k_padded];
        let mut scales = vec![0f32; groups * n_padded];
        let mut offsets = vec![0i32; groups * n_padded];
        for col in 0..out_dim {
            let row = &weight[col * in_dim..(col + 1) * in_dim];
            for g in 0..groups {
                let span = &row[(g * group).min(in_dim)..((g + 1) * group).min(in_dim)];
                let max = span.iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = max / 127.0;
                let inv = if max > 0.0 { 127.0 / max } else { 0.0 };
                let mut sum = 0i32;
                for (i, v) in span.iter().enumerate() {
                    let k = g * group + i;
                    let q = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
                    sum += q as i32;
                    packed[((col / PANEL) * kq + k / 4) * 64 + (col % PANEL) * 4 + k % 4] = q;
                }
                scales[g * n_padded + col] = scale;
                offsets[g * n_padded + col] = 128 * sum;
            }
        }
        Self {
            out_dim,
            in_dim,
            group,
            groups,
            k_padded,
            n_padded,
            packed,
            scales,
            offsets,
        }
    }

    /// Output channels.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Inputs that share one scale.
    pub fn group(&self) -> usize {
        self.group
    }

    /// Bytes of the stored weight: one byte per weight and one f32 scale per channel and group
    /// (padding excluded).
    pub fn size_bytes(&self) -> usize {
        self.out_dim * self.in_dim + self.out_dim * self.groups * 4
    }

    /// The quantized weight, dequantized: row-major `out x in`.
    pub fn dequantize(&self) -> Vec<f32> {
        let kq = self.k_padded / 4;
        let mut out = vec![0f32; self.out_dim * self.in_dim];
        for col in 0..self.out_dim {
            for k in 0..self.in_dim {
                let q = self.packed[((col / PANEL) * kq + k / 4) * 64 + (col % PANEL) * 4 + k % 4];
                out[col * self.in_dim + k] =
                    q as f32 * self.scales[(k / self.group) * self.n_padded + col];
            }
        }
        out
    }

    /// True when a product of `rows` rows is big enough to be worth the thread pool: below
    /// [`PARALLEL_MIN_MACS`] multiply-adds, waking the pool costs more than the work (a digits
    /// layer at batch 1 is 16k).
    fn worth_threads(&self, rows: usize) -> bool {
        rows * self.k_padded * self.n_padded >= PARALLEL_MIN_MACS
    }

    fn quantize_rows(&self, x: &[f32], rows: usize) -> QuantizedRows {
        let mut data = vec![128u8; rows * self.k_padded];
        let mut scales = vec![0f32; rows * self.groups];
        let quantize_row = |((q_row, s_row), x_row): ((&mut [u8], &mut [f32]), &[f32])| {
            for (g, scale) in s_row.iter_mut().enumerate() {
                let start = (g * self.group).min(self.in_dim);
                let end = ((g + 1) * self.group).min(self.in_dim);
                *scale = quantize_span(&x_row[start..end], &mut q_row[start..end]);
            }
        };
        if self.worth_threads(rows) {
            data.par_chunks_mut(self.k_padded)
                .zip(scales.par_chunks_mut(self.groups))
                .zip(x.par_chunks(self.in_dim))
                .for_each(quantize_row);
        } else {
            data.chunks_mut(self.k_padded)
                .zip(scales.chunks_mut(self.groups))
                .zip(x.chunks(self.in_dim))
                .for_each(quantize_row);
        }
        QuantizedRows { data, scales }
    }

    /// `dst = epilogue(x W^T)` for `rows` rows of `x` (`rows x in_dim`) into `dst`
    /// (`rows x out_dim`): each tile of sums gets its bias, residual and GELU as it is stored, so
    /// `dst` is written once and never read.
    pub fn matmul(&self, x: &[f32], rows: usize, dst: &mut [f32], epilogue: Epilogue<'_>) {
        assert_eq!(x.len(), rows * self.in_dim, "input shape");
        assert_eq!(dst.len(), rows * self.out_dim, "output shape");
        epilogue.check(rows, self.out_dim);
        if rows == 0 || self.out_dim == 0 {
            return;
        }
        let q = self.quantize_rows(x, rows);
        let vnni = CpuFeatures::get().avx512_vnni;
        let tiles = self.n_padded / TILE_COLS;
        let chunks = rows.div_ceil(TASK_ROWS);
        let out_dim = self.out_dim;
        // Each task writes the rows of its chunk in the columns of its tile: disjoint regions.
        let dst_addr = dst.as_mut_ptr() as usize;
        let run_task = |task: usize| {
            let (chunk, tile) = (task / tiles, task % tiles);
            let row_end = ((chunk + 1) * TASK_ROWS).min(rows);
            let col0 = tile * TILE_COLS;
            let width = TILE_COLS.min(out_dim - col0);
            let mut row = chunk * TASK_ROWS;
            while row < row_end {
                let mr = (row_end - row).min(TILE_ROWS);
                let mut out = [[0f32; TILE_COLS]; TILE_ROWS];
                self.tile(&q, row, mr, tile, &mut out, vnni);
                // SAFETY: the tile's rows and columns lie in `dst` and no other task writes them.
                unsafe {
                    epilogue.store(&out[..mr], dst_addr as *mut f32, row, col0, width, out_dim)
                };
                row += mr;
            }
        };
        if self.worth_threads(rows) {
            (0..chunks * tiles).into_par_iter().for_each(run_task);
        } else {
            (0..chunks * tiles).for_each(run_task);
        }
    }

    fn tile(
        &self,
        q: &QuantizedRows,
        row: usize,
        mr: usize,
        tile: usize,
        out: &mut [[f32; TILE_COLS]; TILE_ROWS],
        vnni: bool,
    ) {
        #[cfg(target_arch = "x86_64")]
        if vnni {
            // SAFETY: the CPU has AVX-512 F/BW and VNNI (detected at run time); the tile's rows
            // and panels lie inside `q` and `self.packed`.
            unsafe {
                match mr {
                    6 => self.tile_vnni::<6>(q, row, tile, out),
                    5 => self.tile_vnni::<5>(q, row, tile, out),
                    4 => self.tile_vnni::<4>(q, row, tile, out),
                    3 => self.tile_vnni::<3>(q, row, tile, out),
                    2 => self.tile_vnni::<2>(q, row, tile, out),
                    _ => self.tile_vnni::<1>(q, row, tile, out),
                }
            }
            return;
        }
        let _ = vnni;
        self.tile_portable(q, row, mr, tile, out);
    }

    /// The same sums as the VNNI kernel, one scalar multiply-add at a time.
    fn tile_portable(
        &self,
        q: &QuantizedRows,
        row: usize,
        mr: usize,
        tile: usize,
        out: &mut [[f32; TILE_COLS]; TILE_ROWS],
    ) {
        let kq = self.k_padded / 4;
        for (r, out_row) in out.iter_mut().enumerate().take(mr) {
            let a = &q.data[(row + r) * self.k_padded..(row + r + 1) * self.k_padded];
            for (c, o) in out_row.iter_mut().enumerate() {
                let col = tile * TILE_COLS + c;
                let panel = &self.packed[(col / PANEL) * kq * 64..(col / PANEL + 1) * kq * 64];
                let lane = (col % PANEL) * 4;
                let mut total = 0f32;
                for g in 0..self.groups {
                    let mut acc = 0i32;
                    for k in g * self.group..(g + 1) * self.group {
                        acc += a[k] as i32 * panel[(k / 4) * 64 + lane + k % 4] as i32;
                    }
                    let idx = g * self.n_padded + col;
                    total += (acc - self.offsets[idx]) as f32
                        * self.scales[idx]
                        * q.scales[(row + r) * self.groups + g];
                }
                *o = total;
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile_vnni<const MR: usize>(
        &self,
        q: &QuantizedRows,
        row: usize,
        tile: usize,
        out: &mut [[f32; TILE_COLS]; TILE_ROWS],
    ) {
        use std::arch::x86_64::*;
        let kq_total = self.k_padded / 4;
        let gq = self.group / 4;
        let p0 = self.packed.as_ptr().add(2 * tile * kq_total * 64);
        let p1 = p0.add(kq_total * 64);
        let a = q.data.as_ptr().add(row * self.k_padded);
        let col0 = tile * TILE_COLS;
        let mut sums = [[_mm512_setzero_ps(); 2]; MR];
        for g in 0..self.groups {
            let mut acc = [[_mm512_setzero_si512(); 2]; MR];
            for kq in g * gq..(g + 1) * gq {
                let w0 = _mm512_loadu_si512(p0.add(kq * 64) as *const __m512i);
                let w1 = _mm512_loadu_si512(p1.add(kq * 64) as *const __m512i);
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let four = (a.add(r * self.k_padded + kq * 4) as *const i32).read_unaligned();
                    let av = _mm512_set1_epi32(four);
                    acc_r[0] = _mm512_dpbusd_epi32(acc_r[0], av, w0);
                    acc_r[1] = _mm512_dpbusd_epi32(acc_r[1], av, w1);
                }
            }
            let at = g * self.n_padded + col0;
            let s0 = _mm512_loadu_ps(self.scales.as_ptr().add(at));
            let s1 = _mm512_loadu_ps(self.scales.as_ptr().add(at + PANEL));
            let o0 = _mm512_loadu_si512(self.offsets.as_ptr().add(at) as *const __m512i);
            let o1 = _mm512_loadu_si512(self.offsets.as_ptr().add(at + PANEL) as *const __m512i);
            for (r, (sum_r, acc_r)) in sums.iter_mut().zip(&acc).enumerate() {
                let sa = _mm512_set1_ps(*q.scales.get_unchecked((row + r) * self.groups + g));
                let f0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc_r[0], o0)), s0);
                let f1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc_r[1], o1)), s1);
                sum_r[0] = _mm512_fmadd_ps(f0, sa, sum_r[0]);
                sum_r[1] = _mm512_fmadd_ps(f1, sa, sum_r[1]);
            }
        }
        for (out_r, sum_r) in out.iter_mut().zip(&sums) {
            _mm512_storeu_ps(out_r.as_mut_ptr(), sum_r[0]);
            _mm512_storeu_ps(out_r.as_mut_ptr().add(PANEL), sum_r[1]);
        }
    }
}

/// Quantizes one span symmetrically to `q + 128`; returns its scale (0 for an all-zero span).
fn quantize_span(x: &[f32], q: &mut [u8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if CpuFeatures::get().avx512 {
        // SAFETY: the CPU has AVX-512 F (detected at run time).
        return unsafe { crate::kernels::avx512::quantize_span(x, q) };
    }
    quantize_span_portable(x, q)
}

fn quantize_span_portable(x: &[f32], q: &mut [u8]) -> f32 {
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max == 0.0 {
        return 0.0;
    }
    let inv = 127.0 / max;
    for (d, v) in q.iter_mut().zip(x) {
        *d = ((v * inv).round_ties_even().clamp(-127.0, 127.0) as i32 + 128) as u8;
    }
    max / 127.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.gen_range(-1f32..1.0)).collect()
    }

    /// The straightforward path: the dequantized weight times the dequantized activations.
    fn reference(w: &Int8Matrix, x: &[f32], rows: usize) -> Vec<f64> {
        let wd = w.dequantize();
        let q = w.quantize_rows(x, rows);
        let mut out = vec![0f64; rows * w.out_dim];
        for r in 0..rows {
            for c in 0..w.out_dim {
                out[r * w.out_dim + c] = (0..w.in_dim)
                    .map(|k| {
                        let a = (q.data[r * w.k_padded + k] as i32 - 128) as f64
                            * q.scales[r * w.groups + k / w.group] as f64;
                        a * wd[c * w.in_dim + k] as f64
                    })
                    .sum();
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn kernel_matches_the_straightforward_product(
            rows in 1usize..20, in_dim in 1usize..90, out_dim in 1usize..70,
            group in prop::option::of(1usize..40), seed in 0u64..1000,
        ) {
            let w = Int8Matrix::quantize(&random(out_dim * in_dim, seed), out_dim, in_dim, group);
            let x = random(rows * in_dim, seed + 1);
            let want = reference(&w, &x, rows);
            let residual = vec![0.5f32; rows * out_dim];
            let mut got = vec![f32::NAN; rows * out_dim];
            w.matmul(&x, rows, &mut got, Epilogue { residual: Some(&residual), ..Epilogue::default() });
            for (g, r) in got.iter().zip(&want) {
                prop_assert!((*g as f64 - 0.5 - r).abs() < 1e-4 * (1.0 + r.abs()), "{g} vs {r}");
            }
        }
    }

    #[test]
    fn portable_and_vector_kernels_agree_and_stay_within_int8_error() {
        let (rows, in_dim, out_dim) = (13, 384, 77);
        let wf = random(out_dim * in_dim, 3);
        let x = random(rows * in_dim, 4);
        for group in [None, Some(64)] {
            let w = Int8Matrix::quantize(&wf, out_dim, in_dim, group);
            let q = w.quantize_rows(&x, rows);
            let vnni = CpuFeatures::get().avx512_vnni;
            for row in (0..rows).step_by(TILE_ROWS) {
                let mr = (rows - row).min(TILE_ROWS);
                for tile in 0..w.n_padded / TILE_COLS {
                    let mut fast = [[0f32; TILE_COLS]; TILE_ROWS];
                    let mut slow = [[0f32; TILE_COLS]; TILE_ROWS];
                    w.tile(&q, row, mr, tile, &mut fast, vnni);
                    w.tile_portable(&q, row, mr, tile, &mut slow);
                    for r in 0..mr {
                        for c in 0..TILE_COLS {
                            let (f, s) = (fast[r][c], slow[r][c]);
                            assert!((f - s).abs() <= 1e-5 * (1.0 + s.abs()), "{f} vs {s}");
                        }
                    }
                }
            }
            // Against the f32 product: int8 rounding of both operands, a few tenths of a percent.
            let mut got = vec![0f32; rows * out_dim];
            w.matmul(&x, rows, &mut got, Epilogue::default());
            let mut err = 0f64;
            let mut norm = 0f64;
            for r in 0..rows {
                for c in 0..out_dim {
                    let exact: f64 = (0..in_dim)
                        .map(|k| x[r * in_dim + k] as f64 * wf[c * in_dim + k] as f64)
                        .sum();
                    err += (got[r * out_dim + c] as f64 - exact).powi(2);
                    norm += exact * exact;
                }
            }
            assert!(
                (err / norm).sqrt() < 0.01,
                "relative error {}",
                (err / norm).sqrt()
            );
        }
    }

    proptest! {
        #[test]
        fn vector_quantization_equals_the_portable_one(
            x in prop::collection::vec(-50f32..50.0, 1..100),
        ) {
            let mut fast = vec![0u8; x.len()];
            let mut slow = vec![0u8; x.len()];
            let (sf, ss) = (quantize_span(&x, &mut fast), quantize_span_portable(&x, &mut slow));
            prop_assert_eq!(sf, ss);
            prop_assert_eq!(fast, slow);
        }
    }

    #[test]
    fn the_epilogue_adds_bias_and_residual_then_applies_gelu() {
        let (rows, in_dim, out_dim) = (7, 40, 45);
        let w = Int8Matrix::quantize(&random(out_dim * in_dim, 8), out_dim, in_dim, Some(16));
        let x = random(rows * in_dim, 9);
        let bias = random(out_dim, 10);
        let residual = random(rows * out_dim, 11);
        let mut plain = vec![0f32; rows * out_dim];
        w.matmul(&x, rows, &mut plain, Epilogue::default());
        let mut fused = vec![0f32; rows * out_dim];
        let epilogue = Epilogue {
            bias: Some(&bias),
            residual: Some(&residual),
            gelu: true,
        };
        w.matmul(&x, rows, &mut fused, epilogue);
        for (i, (p, f)) in plain.iter().zip(&fused).enumerate() {
            let mut want = [p + bias[i % out_dim] + residual[i]];
            crate::kernels::elementwise::gelu_erf_in_place(&mut want);
            assert!((f - want[0]).abs() < 1e-6, "{f} vs {}", want[0]);
        }
    }

    #[test]
    fn zero_rows_and_zero_weights_give_the_bias() {
        let w = Int8Matrix::quantize(&[0.0; 8], 2, 4, None);
        let mut dst = vec![f32::NAN; 2];
        let bias = [1.0, 2.0];
        let epilogue = Epilogue {
            bias: Some(&bias),
            ..Epilogue::default()
        };
        w.matmul(&[0.5, -0.5, 0.25, 0.0], 1, &mut dst, epilogue);
        assert_eq!(dst, vec![1.0, 2.0]);
        assert_eq!(w.size_bytes(), 8 + 2 * 4);
    }
}
