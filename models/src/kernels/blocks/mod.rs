//! GGML's block-quantized formats (`q8_0`, `q4_0`, `q4_1`, `q5_0`, `q5_1`, `q4k`, `q5k`, `q6k`) on
//! slimbench's own kernels. The weight stays in GGML's exact bytes (so GGUF tensors load and save
//! unchanged and candle's `QTensor` reads them); a product decodes one panel of 32 output
//! channels at a time into int8 with a scale (and a minimum, for the formats that have one) per
//! group of 32 inputs (16 for `q6k`), quantizes the activations per row to the same groups, and
//! runs the integer kernel of `kernels::qgemm`: sums exact in i32, block scales applied
//! per group. Dequantization follows candle's `to_float` expression for expression, so it is equal
//! bit for bit.

pub(crate) mod decode;
mod format;
pub(crate) mod gemv;
pub(crate) mod interleaved;
mod matrix;

use candle_core::quantized::GgmlDType;

use crate::error::Result;

pub(crate) use decode::scale_min_k4;
pub use format::BlockFormat;
pub(crate) use format::Decoded;
use format::GgmlBlock;
pub use matrix::BlockMatrix;

pub use crate::kernels::qgemm::ONE_ROW_MAX_ROWS;

/// Runs `$body` with `$B` the block type of `$format` (one monomorphised copy each): the one
/// match from a format's name to its type.
macro_rules! dispatch {
    ($format:expr, $B:ident => $body:expr) => {{
        use $crate::kernels::blocks::decode::*;
        match $format {
            BlockFormat::Q8_0 => {
                type $B = BlockQ8_0;
                $body
            }
            BlockFormat::Q4_0 => {
                type $B = BlockQ4_0;
                $body
            }
            BlockFormat::Q4_1 => {
                type $B = BlockQ4_1;
                $body
            }
            BlockFormat::Q5_0 => {
                type $B = BlockQ5_0;
                $body
            }
            BlockFormat::Q5_1 => {
                type $B = BlockQ5_1;
                $body
            }
            BlockFormat::Q4K => {
                type $B = BlockQ4K;
                $body
            }
            BlockFormat::Q5K => {
                type $B = BlockQ5K;
                $body
            }
            BlockFormat::Q6K => {
                type $B = BlockQ6K;
                $body
            }
        }
    }};
}
pub(crate) use dispatch;

impl BlockFormat {
    /// Every format, in the catalogue's order.
    pub const ALL: [BlockFormat; 8] = [
        BlockFormat::Q8_0,
        BlockFormat::Q6K,
        BlockFormat::Q5K,
        BlockFormat::Q5_1,
        BlockFormat::Q5_0,
        BlockFormat::Q4K,
        BlockFormat::Q4_1,
        BlockFormat::Q4_0,
    ];

    /// The name slimbench gives the format (`q8_0`, `q4k`, ...), in techniques and records.
    pub fn name(self) -> &'static str {
        dispatch!(self, B => B::NAME)
    }

    /// The format called `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The formats tried, in order, for a layer when `self` is asked for: the nearest block-32
    /// format with at least as many bits per weight after a k-quant; f32 (not listed) is last.
    pub fn fallback_chain(self) -> Vec<BlockFormat> {
        dispatch!(self, B => B::FALLBACK.to_vec())
    }

    /// The first format of the fallback chain whose block divides `in_dim`, if any.
    pub fn choose_for_width(self, in_dim: usize) -> Option<BlockFormat> {
        self.fallback_chain()
            .into_iter()
            .find(|f| in_dim.is_multiple_of(f.block_len()))
    }

    /// The format of a candle dtype, where slimbench has a kernel for it.
    pub fn from_ggml(dtype: GgmlDType) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.ggml() == dtype)
    }

    /// The candle dtype.
    pub fn ggml(self) -> GgmlDType {
        dispatch!(self, B => B::DTYPE)
    }

    /// True when the format has an interleaved one-row kernel.
    pub(crate) fn has_interleaved_kernel(self) -> bool {
        dispatch!(self, B => B::INTERLEAVED)
    }

    /// True for the 32-blocks with a fifth bit per value (`q5_0`, `q5_1`).
    pub(crate) fn has_fifth_bits(self) -> bool {
        dispatch!(self, B => B::FIFTH_BITS)
    }

    /// A row-major `out_dim x in_dim` f32 weight in this format's GGML bytes, by GGML's
    /// quantizer; `in_dim` a whole number of blocks.
    pub(crate) fn quantize(self, weight: &[f32], out_dim: usize, in_dim: usize) -> Result<Vec<u8>> {
        dispatch!(self, B => B::quantize(weight, out_dim, in_dim))
    }

    /// Weights per block (32, or 256 for the k-quants).
    pub fn block_len(self) -> usize {
        dispatch!(self, B => B::BLOCK_LEN)
    }

    /// Bits per weight as stored (scales and offsets included): 8.5 for q8_0, 4.5 for q4_0.
    pub fn bits_per_weight(self) -> f64 {
        (self.block_bytes() * 8) as f64 / self.block_len() as f64
    }

    /// Bytes of one block.
    pub fn block_bytes(self) -> usize {
        dispatch!(self, B => B::BYTES)
    }

    /// Weights that share one scale (and minimum): the group of the kernel.
    pub fn group(self) -> usize {
        dispatch!(self, B => B::GROUP)
    }

    /// For the formats whose values are stored unsigned and offset (`q4_0`: 8, `q5_0`: 16, `q6k`:
    /// 32), the offset; 0 for the others. The int8 panels keep the unsigned value and fold
    /// `-offset x scale` into the group's minimum.
    pub(crate) fn value_offset(self) -> i8 {
        dispatch!(self, B => B::VALUE_OFFSET)
    }

    /// Bits of the unsigned values in the int8 panels (4, 5 or 6); `None` for `q8_0`, whose
    /// values are signed bytes.
    pub(crate) fn panel_bits(self) -> Option<u32> {
        dispatch!(self, B => B::PANEL_BITS)
    }

    /// Decodes one block (`block_bytes()` bytes) into `out`.
    pub(crate) fn decode_into(self, block: &[u8], out: &mut Decoded) {
        dispatch!(self, B => B::decode(block, out))
    }

    /// True for the formats that add a minimum to each group (`w = d q + m`).
    pub fn has_mins(self) -> bool {
        dispatch!(self, B => B::HAS_MINS)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernels::epilogue::Epilogue;
    use crate::kernels::isa::Isa;
    use crate::kernels::portable::tile_portable;
    use crate::kernels::qgemm::tests::paths_here;
    use crate::kernels::qgemm::{tile_sums, PanelSource, QuantizedRows, TILE_COLS, TILE_ROWS};
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    /// `n` numbers in -1..1 from `seed`.
    pub(crate) fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.gen_range(-1f32..1.0)).collect()
    }

    #[test]
    fn dequantization_equals_candles_bit_for_bit() {
        for format in BlockFormat::ALL {
            let (out_dim, in_dim) = (7, 3 * format.block_len());
            let mut w = random(out_dim * in_dim, 1);
            // A row of zeros and a row of one sign exercise the scale and minimum edge cases.
            w[..in_dim].fill(0.0);
            w[in_dim..2 * in_dim]
                .iter_mut()
                .for_each(|v| *v = v.abs() + 0.5);
            let t = Tensor::from_slice(&w, (out_dim, in_dim), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&t, format.ggml()).unwrap();
            let theirs = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
            let theirs = theirs.to_vec1::<f32>().unwrap();
            let ours = BlockMatrix::from_qtensor(&q).unwrap();
            assert_eq!(ours.size_bytes(), q.storage_size_in_bytes(), "{format:?}");
            let mine = ours.dequantize();
            for (i, (a, b)) in mine.iter().zip(&theirs).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{format:?} weight {i}: {a} vs {b}"
                );
            }
            // And the blocks go back to candle unchanged.
            let back = ours.to_qtensor(&Device::Cpu).unwrap();
            assert_eq!(back.data().unwrap(), q.data().unwrap(), "{format:?}");
        }
    }

    #[test]
    fn widths_that_are_not_a_multiple_of_the_block_are_refused_with_the_reason() {
        let e = BlockMatrix::quantize(&random(2 * 48, 0), 2, 48, BlockFormat::Q8_0).unwrap_err();
        assert!(e.to_string().contains("input width"), "{e}");
        let e = BlockMatrix::from_bytes(BlockFormat::Q4K, 2, 256, vec![0; 10]).unwrap_err();
        assert!(e.to_string().contains("288 bytes"), "{e}");
    }

    /// The dequantized weight times the activations quantized as the product does (per 32
    /// inputs for one-row products, per group of the format otherwise), in f64.
    fn reference(w: &BlockMatrix, x: &[f32], rows: usize) -> Vec<f64> {
        let wd = w.dequantize();
        let group = if rows <= ONE_ROW_MAX_ROWS {
            32
        } else {
            w.format().group()
        };
        let q = QuantizedRows::quantize(x, rows, w.in_dim(), group, false, false);
        let mut out = vec![0f64; rows * w.out_dim()];
        for r in 0..rows {
            for c in 0..w.out_dim() {
                out[r * w.out_dim() + c] = (0..w.in_dim())
                    .map(|k| {
                        let a = (q.data[r * q.k_padded + k] as i32 - 128) as f64
                            * q.scales[r * q.groups + k / q.group] as f64;
                        a * wd[c * w.in_dim() + k] as f64
                    })
                    .sum();
            }
        }
        out
    }

    fn format_strategy() -> impl Strategy<Value = BlockFormat> {
        prop::sample::select(BlockFormat::ALL.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        #[test]
        fn products_match_the_dequantized_product(
            format in format_strategy(), rows in 1usize..=300, out_dim in 1usize..80,
            blocks in 1usize..4, seed in 0u64..1000,
        ) {
            let in_dim = blocks * format.block_len();
            let wf = random(out_dim * in_dim, seed);
            let w = BlockMatrix::quantize(&wf, out_dim, in_dim, format).unwrap();
            let x = random(rows * in_dim, seed + 1);
            let want = reference(&w, &x, rows);
            let bias = random(out_dim, seed + 2);
            let mut got = vec![f32::NAN; rows * out_dim];
            w.matmul(&x, rows, &mut got, Epilogue { bias: Some(&bias), ..Epilogue::default() });
            for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                let r = r + bias[i % out_dim] as f64;
                prop_assert!((*g as f64 - r).abs() < 2e-4 * (1.0 + r.abs()), "{format:?} {g} vs {r}");
            }
            // Against the f32 product of the dequantized weight: the activations' int8 rounding,
            // under a percent.
            let wd = w.dequantize();
            let (mut err, mut norm) = (0f64, 0f64);
            for r in 0..rows {
                for c in 0..out_dim {
                    let exact: f64 = (0..in_dim)
                        .map(|k| x[r * in_dim + k] as f64 * wd[c * in_dim + k] as f64)
                        .sum::<f64>() + bias[c] as f64;
                    err += (got[r * out_dim + c] as f64 - exact).powi(2);
                    norm += exact * exact;
                }
            }
            prop_assert!((err / norm).sqrt() < 0.01, "{format:?}: relative error {}", (err / norm).sqrt());
        }
    }

    #[test]
    fn every_kernel_path_gives_the_same_sums_for_every_format() {
        let rows = 11;
        for format in BlockFormat::ALL {
            let (out_dim, in_dim) = (45, 2 * format.block_len());
            let w = BlockMatrix::quantize(&random(out_dim * in_dim, 5), out_dim, in_dim, format)
                .unwrap();
            let x = random(rows * in_dim, 6);
            let q = QuantizedRows::quantize(
                &x,
                rows,
                in_dim,
                format.group(),
                format.panel_bits().is_some(),
                false,
            );
            for path in paths_here() {
                for tile in 0..out_dim.div_ceil(TILE_COLS) {
                    let scratch = &mut ();
                    let panel = w.panel(tile, scratch);
                    for row in (0..rows).step_by(TILE_ROWS) {
                        let mr = (rows - row).min(TILE_ROWS);
                        let mut fast = [[0f32; TILE_COLS]; TILE_ROWS];
                        let mut slow = [[0f32; TILE_COLS]; TILE_ROWS];
                        tile_sums(&panel, &q, row, mr, &mut fast, path);
                        tile_portable(&panel, &q, row, mr, &mut slow);
                        for r in 0..mr {
                            for c in 0..TILE_COLS {
                                let (f, s) = (fast[r][c], slow[r][c]);
                                assert!(
                                    (f - s).abs() <= 1e-5 * (1.0 + s.abs()),
                                    "{format:?} {path:?}: {f} vs {s}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn one_row_products_agree_on_every_path_and_match_the_dequantized_product() {
        for format in BlockFormat::ALL {
            for (out_dim, blocks) in [(1, 1), (45, 3), (70, 2)] {
                let in_dim = blocks * format.block_len();
                let w =
                    BlockMatrix::quantize(&random(out_dim * in_dim, 12), out_dim, in_dim, format)
                        .unwrap();
                let rows = 3;
                let x = random(rows * in_dim, 13);
                let wd = w.dequantize();
                let mut portable = vec![0f32; rows * out_dim];
                w.matmul_rows(
                    &x,
                    rows,
                    &mut portable,
                    Epilogue::default(),
                    Isa::portable(),
                );
                // The activations' rounding moves each input by at most half its block's step
                // (max / 127 / 2): the error of each output is bounded by that times |w|.
                for r in 0..rows {
                    let xr = &x[r * in_dim..(r + 1) * in_dim];
                    for c in 0..out_dim {
                        let wc = &wd[c * in_dim..(c + 1) * in_dim];
                        let exact: f64 =
                            xr.iter().zip(wc).map(|(a, b)| *a as f64 * *b as f64).sum();
                        let bound: f64 = (0..in_dim)
                            .map(|k| {
                                let block = &xr[k / 32 * 32..(k / 32 + 1) * 32];
                                let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                                wc[k].abs() as f64 * max as f64 / 127.0 / 2.0
                            })
                            .sum::<f64>()
                            * 1.01
                            + 1e-5;
                        let got = portable[r * out_dim + c] as f64;
                        assert!(
                            (got - exact).abs() <= bound,
                            "{format:?} {out_dim}x{in_dim}: {got} vs {exact} (bound {bound})"
                        );
                    }
                }
                for path in paths_here() {
                    if path == Isa::portable() {
                        continue;
                    }
                    let mut fast = vec![0f32; rows * out_dim];
                    w.matmul_rows(&x, rows, &mut fast, Epilogue::default(), path);
                    for (f, p) in fast.iter().zip(&portable) {
                        assert!(
                            (f - p).abs() <= 1e-5 * (1.0 + p.abs()),
                            "{format:?} {path:?}: {f} vs {p}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_epilogue_adds_bias_and_residual_then_applies_gelu() {
        let (rows, in_dim, out_dim) = (3, 64, 33);
        let w = BlockMatrix::quantize(
            &random(out_dim * in_dim, 8),
            out_dim,
            in_dim,
            BlockFormat::Q4_1,
        )
        .unwrap();
        crate::kernels::epilogue::assert_fused_epilogue(
            rows,
            in_dim,
            out_dim,
            random,
            |x, rows, dst, epilogue| w.matmul(x, rows, dst, epilogue),
        );
    }
}
