//! int8 matrix products: weights quantized symmetrically per output channel (optionally per
//! group of inputs), activations quantized per row (and group) when the product runs, products
//! summed exactly in i32 and scaled back to f32 once per group, through the integer kernel of
//! `kernels::qgemm` (AVX-512 VNNI, AVX2 or portable).
//!
//! The weight is packed once, when it is quantized, in the kernel's panel layout: panels of 16
//! output channels; within a panel, each group of 4 consecutive inputs of the 16 channels is 64
//! contiguous bytes.

use crate::kernels::epilogue::Epilogue;
use crate::kernels::qgemm::{
    self, round_up, Panel, PanelSource, QuantizedRows, ONE_ROW_MAX_ROWS, PANEL, TILE_COLS,
};

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

    /// True when a product of `rows` rows is worth the thread pool (see
    /// [`qgemm::worth_threads`]).
    fn worth_threads(&self, rows: usize) -> bool {
        qgemm::worth_threads(rows, self.k_padded, self.n_padded)
    }

    /// The rows quantized, in parallel for a large product of many rows (a few rows are one
    /// task each: nothing to share).
    fn quantize_rows(&self, x: &[f32], rows: usize) -> QuantizedRows {
        let parallel = rows > ONE_ROW_MAX_ROWS && self.worth_threads(rows);
        QuantizedRows::quantize(x, rows, self.in_dim, self.group, false, parallel)
    }

    /// `dst = epilogue(x W^T)` for `rows` rows of `x` (`rows x in_dim`) into `dst`
    /// (`rows x out_dim`): each tile of sums gets its bias, residual and GELU as it is stored, so
    /// `dst` is written once and never read.
    pub fn matmul(&self, x: &[f32], rows: usize, dst: &mut [f32], epilogue: Epilogue<'_>) {
        assert_eq!(x.len(), rows * self.in_dim, "input shape");
        let q = self.quantize_rows(x, rows);
        qgemm::matmul(self, &q, rows, dst, epilogue, self.worth_threads(rows));
    }
}

impl PanelSource for Int8Matrix {
    type Scratch = ();

    fn out_dim(&self) -> usize {
        self.out_dim
    }

    fn panel<'a>(&'a self, tile: usize, _scratch: &'a mut ()) -> Panel<'a> {
        let sub_stride = self.k_padded / 4 * 64;
        Panel {
            data: &self.packed[2 * tile * sub_stride..],
            sub_stride,
            scales: &self.scales[tile * TILE_COLS..],
            offsets: &self.offsets[tile * TILE_COLS..],
            mins: None,
            unsigned_bits: None,
            stride: self.n_padded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::portable::{quantize_span_portable, tile_portable};
    use crate::kernels::qgemm::{quantize_span, tile_sums, TILE_ROWS};
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
                        let a = (q.data[r * q.k_padded + k] as i32 - 128) as f64
                            * q.scales[r * q.groups + k / q.group] as f64;
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
    fn every_kernel_path_agrees_and_stays_within_int8_error() {
        let (rows, in_dim, out_dim) = (13, 384, 77);
        let wf = random(out_dim * in_dim, 3);
        let x = random(rows * in_dim, 4);
        for group in [None, Some(64)] {
            let w = Int8Matrix::quantize(&wf, out_dim, in_dim, group);
            let q = w.quantize_rows(&x, rows);
            for path in crate::kernels::qgemm::tests::paths_here() {
                for row in (0..rows).step_by(TILE_ROWS) {
                    let mr = (rows - row).min(TILE_ROWS);
                    for tile in 0..w.n_padded / TILE_COLS {
                        let scratch = &mut ();
                        let panel = w.panel(tile, scratch);
                        let mut fast = [[0f32; TILE_COLS]; TILE_ROWS];
                        let mut slow = [[0f32; TILE_COLS]; TILE_ROWS];
                        tile_sums(&panel, &q, row, mr, &mut fast, path);
                        tile_portable(&panel, &q, row, mr, &mut slow);
                        for r in 0..mr {
                            for c in 0..TILE_COLS {
                                let (f, s) = (fast[r][c], slow[r][c]);
                                assert!(
                                    (f - s).abs() <= 1e-5 * (1.0 + s.abs()),
                                    "{path:?}: {f} vs {s}"
                                );
                            }
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
            for (path, fast, slow) in quantizations(&x) {
                prop_assert_eq!(fast, slow, "{}", path);
            }
        }
    }

    /// Each vector quantization this CPU has (the dispatched one, and AVX2's whatever
    /// `SLIMBENCH_KERNELS` says) next to the portable one: (name, (scale, bytes) twice).
    #[allow(clippy::type_complexity)]
    fn quantizations(x: &[f32]) -> Vec<(&'static str, (f32, Vec<u8>), (f32, Vec<u8>))> {
        let run = |f: &dyn Fn(&[f32], &mut [u8]) -> f32| {
            let mut q = vec![0u8; x.len()];
            (f(x, &mut q), q)
        };
        let slow = run(&quantize_span_portable);
        let mut all = vec![("dispatched", run(&quantize_span), slow.clone())];
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::Isa::cpu_runs_avx2() {
            // SAFETY: the CPU has AVX2 (detected just above).
            let avx2 = run(&|x, q| unsafe { crate::kernels::x86::avx2::quantize_span_avx2(x, q) });
            all.push(("avx2", avx2, slow));
        } else {
            eprintln!("AVX2 quantization is not tested: this CPU has no AVX2");
        }
        all
    }

    #[test]
    fn vector_quantization_rounds_halves_to_even_as_the_portable_one() {
        // With 127 the largest magnitude every product with 127 / max is the value itself, so
        // the halves are exact ties; 70 values cover two 32-input steps and a ragged rest.
        let x: Vec<f32> = (0..70)
            .map(|i| {
                if i == 3 {
                    -127.0
                } else {
                    (i as f32 - 35.0) + 0.5
                }
            })
            .collect();
        for (path, fast, slow) in quantizations(&x) {
            assert_eq!(fast, slow, "{path}");
        }
    }

    #[test]
    fn the_epilogue_adds_bias_and_residual_then_applies_gelu() {
        let (rows, in_dim, out_dim) = (7, 40, 45);
        let w = Int8Matrix::quantize(&random(out_dim * in_dim, 8), out_dim, in_dim, Some(16));
        crate::kernels::epilogue::assert_fused_epilogue(
            rows,
            in_dim,
            out_dim,
            random,
            |x, rows, dst, epilogue| w.matmul(x, rows, dst, epilogue),
        );
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
