//! GGML's block-quantized formats (`q8_0`, `q4_0`, `q4_1`, `q5_0`, `q5_1`, `q4k`, `q5k`, `q6k`) on
//! slimbench's own kernels. The weight stays in GGML's exact bytes (so GGUF tensors load and save
//! unchanged and candle's `QTensor` reads them); a product decodes one panel of 32 output
//! channels at a time into int8 with a scale (and a minimum, for the formats that have one) per
//! group of 32 inputs (16 for `q6k`), quantizes the activations per row to the same groups, and
//! runs the integer kernel of `kernels::qgemm`: sums exact in i32, block scales applied
//! per group. Dequantization follows candle's `to_float` expression for expression, so it is equal
//! bit for bit.

pub(crate) mod gemv;
pub(crate) mod interleaved;

use std::borrow::Cow;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Tensor};
use half::f16;

use crate::error::{ModelError, Result};
use crate::kernels::epilogue::Epilogue;
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::kernels::isa::Isa;
use crate::kernels::qgemm::{self, Panel, PanelSource, QuantizedRows, PANEL, TILE_COLS};
use gemv::gemv;

pub use crate::kernels::qgemm::ONE_ROW_MAX_ROWS;

/// Runs `$body` with `$decode` bound to the decoder of `$format` (one monomorphised copy each).
macro_rules! with_decoder {
    ($format:expr, $decode:ident => $body:expr) => {
        match $format {
            BlockFormat::Q8_0 => {
                let $decode = decode_q8_0;
                $body
            }
            BlockFormat::Q4_0 => {
                let $decode = decode_q4_0;
                $body
            }
            BlockFormat::Q4_1 => {
                let $decode = decode_q4_1;
                $body
            }
            BlockFormat::Q5_0 => {
                let $decode = decode_q5_0;
                $body
            }
            BlockFormat::Q5_1 => {
                let $decode = decode_q5_1;
                $body
            }
            BlockFormat::Q4K => {
                let $decode = decode_q4k;
                $body
            }
            BlockFormat::Q5K => {
                let $decode = decode_q5k;
                $body
            }
            BlockFormat::Q6K => {
                let $decode = decode_q6k;
                $body
            }
        }
    };
}

/// A GGML block format with a kernel of slimbench's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockFormat {
    /// 32 weights: an f16 scale and 32 signed bytes (8.5 bits a weight).
    Q8_0,
    /// 32 weights: an f16 scale and 4-bit values offset by 8 (4.5 bits).
    Q4_0,
    /// 32 weights: f16 scale and minimum, 4-bit values (5 bits).
    Q4_1,
    /// 32 weights: an f16 scale and 5-bit values offset by 16 (5.5 bits).
    Q5_0,
    /// 32 weights: f16 scale and minimum, 5-bit values (6 bits).
    Q5_1,
    /// 256 weights: 8 groups of 32 with 6-bit scales and minimums, 4-bit values (4.5 bits).
    Q4K,
    /// 256 weights: as `q4k` with a fifth bit (5.5 bits).
    Q5K,
    /// 256 weights: 16 groups of 16 with 8-bit scales, 6-bit values offset by 32 (6.56 bits).
    Q6K,
}

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
        match self {
            BlockFormat::Q8_0 => "q8_0",
            BlockFormat::Q4_0 => "q4_0",
            BlockFormat::Q4_1 => "q4_1",
            BlockFormat::Q5_0 => "q5_0",
            BlockFormat::Q5_1 => "q5_1",
            BlockFormat::Q4K => "q4k",
            BlockFormat::Q5K => "q5k",
            BlockFormat::Q6K => "q6k",
        }
    }

    /// The format called `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The formats tried, in order, for a layer when `self` is asked for: the nearest block-32
    /// format with at least as many bits per weight after a k-quant; f32 (not listed) is last.
    pub fn fallback_chain(self) -> Vec<BlockFormat> {
        match self {
            BlockFormat::Q6K => vec![BlockFormat::Q6K, BlockFormat::Q8_0],
            BlockFormat::Q5K => vec![BlockFormat::Q5K, BlockFormat::Q5_1, BlockFormat::Q8_0],
            BlockFormat::Q4K => vec![BlockFormat::Q4K, BlockFormat::Q4_1, BlockFormat::Q8_0],
            other => vec![other],
        }
    }

    /// The first format of the fallback chain whose block divides `in_dim`, if any.
    pub fn choose_for_width(self, in_dim: usize) -> Option<BlockFormat> {
        self.fallback_chain()
            .into_iter()
            .find(|f| in_dim.is_multiple_of(f.block_len()))
    }

    /// The format of a candle dtype, where slimbench has a kernel for it.
    pub fn from_ggml(dtype: GgmlDType) -> Option<Self> {
        Some(match dtype {
            GgmlDType::Q8_0 => BlockFormat::Q8_0,
            GgmlDType::Q4_0 => BlockFormat::Q4_0,
            GgmlDType::Q4_1 => BlockFormat::Q4_1,
            GgmlDType::Q5_0 => BlockFormat::Q5_0,
            GgmlDType::Q5_1 => BlockFormat::Q5_1,
            GgmlDType::Q4K => BlockFormat::Q4K,
            GgmlDType::Q5K => BlockFormat::Q5K,
            GgmlDType::Q6K => BlockFormat::Q6K,
            _ => return None,
        })
    }

    /// The candle dtype.
    pub fn ggml(self) -> GgmlDType {
        match self {
            BlockFormat::Q8_0 => GgmlDType::Q8_0,
            BlockFormat::Q4_0 => GgmlDType::Q4_0,
            BlockFormat::Q4_1 => GgmlDType::Q4_1,
            BlockFormat::Q5_0 => GgmlDType::Q5_0,
            BlockFormat::Q5_1 => GgmlDType::Q5_1,
            BlockFormat::Q4K => GgmlDType::Q4K,
            BlockFormat::Q5K => GgmlDType::Q5K,
            BlockFormat::Q6K => GgmlDType::Q6K,
        }
    }

    /// Weights per block (32, or 256 for the k-quants).
    pub fn block_len(self) -> usize {
        match self {
            BlockFormat::Q4K | BlockFormat::Q5K | BlockFormat::Q6K => 256,
            _ => 32,
        }
    }

    /// Bits per weight as stored (scales and offsets included): 8.5 for q8_0, 4.5 for q4_0.
    pub fn bits_per_weight(self) -> f64 {
        (self.block_bytes() * 8) as f64 / self.block_len() as f64
    }

    /// Bytes of one block.
    pub fn block_bytes(self) -> usize {
        match self {
            BlockFormat::Q8_0 => 34,
            BlockFormat::Q4_0 => 18,
            BlockFormat::Q4_1 => 20,
            BlockFormat::Q5_0 => 22,
            BlockFormat::Q5_1 => 24,
            BlockFormat::Q4K => 144,
            BlockFormat::Q5K => 176,
            BlockFormat::Q6K => 210,
        }
    }

    /// Weights that share one scale (and minimum): the group of the kernel.
    pub fn group(self) -> usize {
        match self {
            BlockFormat::Q6K => 16,
            _ => 32,
        }
    }

    /// For the formats whose values are stored unsigned and offset (`q4_0`: 8, `q5_0`: 16, `q6k`:
    /// 32), the offset; 0 for the others. The int8 panels keep the unsigned value and fold
    /// `-offset x scale` into the group's minimum.
    pub(crate) fn value_offset(self) -> i8 {
        match self {
            BlockFormat::Q4_0 => 8,
            BlockFormat::Q5_0 => 16,
            BlockFormat::Q6K => 32,
            _ => 0,
        }
    }

    /// Bits of the unsigned values in the int8 panels (4, 5 or 6); `None` for `q8_0`, whose
    /// values are signed bytes.
    pub(crate) fn panel_bits(self) -> Option<u32> {
        match self {
            BlockFormat::Q8_0 => None,
            BlockFormat::Q4_0 | BlockFormat::Q4_1 | BlockFormat::Q4K => Some(4),
            BlockFormat::Q5_0 | BlockFormat::Q5_1 | BlockFormat::Q5K => Some(5),
            BlockFormat::Q6K => Some(6),
        }
    }

    /// Decodes one block (`block_bytes()` bytes) into `out`.
    pub(crate) fn decode_into(self, block: &[u8], out: &mut Decoded) {
        with_decoder!(self, decode => decode(block, out))
    }

    /// True for the formats that add a minimum to each group (`w = d q + m`).
    pub fn has_mins(self) -> bool {
        matches!(
            self,
            BlockFormat::Q4_1 | BlockFormat::Q5_1 | BlockFormat::Q4K | BlockFormat::Q5K
        )
    }
}

/// One block decoded: `w[i] = vals[i] * scales[i / group] (+ mins[i / group])`.
pub(crate) struct Decoded {
    /// The block's values, as GGML's dequantization multiplies them.
    pub(crate) vals: [i8; 256],
    /// The scale of each group.
    pub(crate) scales: [f32; 16],
    /// The minimum of each group (zero for the formats without one).
    pub(crate) mins: [f32; 16],
}

impl Default for Decoded {
    fn default() -> Self {
        Self {
            vals: [0; 256],
            scales: [0.0; 16],
            mins: [0.0; 16],
        }
    }
}

fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

#[inline(always)]
fn decode_q8_0(b: &[u8], out: &mut Decoded) {
    out.scales[0] = half_at(b, 0);
    for (v, q) in out.vals[..32].iter_mut().zip(&b[2..34]) {
        *v = *q as i8;
    }
}

#[inline(always)]
fn decode_q4_0(b: &[u8], out: &mut Decoded) {
    out.scales[0] = half_at(b, 0);
    let (lo, hi) = out.vals[..32].split_at_mut(16);
    for ((l, h), q) in lo.iter_mut().zip(hi).zip(&b[2..18]) {
        *l = (q & 0x0F) as i8 - 8;
        *h = (q >> 4) as i8 - 8;
    }
}

#[inline(always)]
fn decode_q4_1(b: &[u8], out: &mut Decoded) {
    out.scales[0] = half_at(b, 0);
    out.mins[0] = half_at(b, 2);
    let (lo, hi) = out.vals[..32].split_at_mut(16);
    for ((l, h), q) in lo.iter_mut().zip(hi).zip(&b[4..20]) {
        *l = (q & 0x0F) as i8;
        *h = (q >> 4) as i8;
    }
}

/// The 5-bit values of `q5_0`/`q5_1`: low nibbles from `qs`, fifth bits from `qh`.
#[inline(always)]
fn five_bits(qh: &[u8], qs: &[u8], vals: &mut [i8], offset: i8) {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let (lo, hi) = vals[..32].split_at_mut(16);
    for (j, ((l, h), q)) in lo.iter_mut().zip(hi).zip(&qs[..16]).enumerate() {
        let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
        *l = ((q & 0x0F) | xh_0) as i8 - offset;
        *h = ((q >> 4) | xh_1) as i8 - offset;
    }
}

#[inline(always)]
fn decode_q5_0(b: &[u8], out: &mut Decoded) {
    out.scales[0] = half_at(b, 0);
    five_bits(&b[2..6], &b[6..22], &mut out.vals, 16);
}

#[inline(always)]
fn decode_q5_1(b: &[u8], out: &mut Decoded) {
    out.scales[0] = half_at(b, 0);
    out.mins[0] = half_at(b, 2);
    five_bits(&b[4..8], &b[8..24], &mut out.vals, 0);
}

/// The 6-bit scale and minimum of group `j` of a `q4k`/`q5k` block (GGML's `get_scale_min_k4`).
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Scales and minimums of the 8 groups of a `q4k`/`q5k` block, as candle computes them.
#[inline(always)]
fn k4_scales(b: &[u8], out: &mut Decoded) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    for g in 0..8 {
        let (sc, m) = scale_min_k4(g, &b[4..16]);
        out.scales[g] = d * sc as f32;
        out.mins[g] = -(dmin * m as f32);
    }
}

#[inline(always)]
fn decode_q4k(b: &[u8], out: &mut Decoded) {
    k4_scales(b, out);
    for j in 0..4 {
        let qs = &b[16 + 32 * j..48 + 32 * j];
        let (lo, hi) = out.vals[64 * j..64 * j + 64].split_at_mut(32);
        for ((l, h), q) in lo.iter_mut().zip(hi).zip(qs) {
            *l = (q & 0xF) as i8;
            *h = (q >> 4) as i8;
        }
    }
}

#[inline(always)]
fn decode_q5k(b: &[u8], out: &mut Decoded) {
    k4_scales(b, out);
    let qh = &b[16..48];
    for j in 0..4 {
        let ql = &b[48 + 32 * j..80 + 32 * j];
        let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
        let (lo, hi) = out.vals[64 * j..64 * j + 64].split_at_mut(32);
        for (((l, h), q), qh) in lo.iter_mut().zip(hi).zip(ql).zip(qh) {
            *l = ((q & 0xF) | if qh & u1 != 0 { 16 } else { 0 }) as i8;
            *h = ((q >> 4) | if qh & u2 != 0 { 16 } else { 0 }) as i8;
        }
    }
}

#[inline(always)]
fn decode_q6k(b: &[u8], out: &mut Decoded) {
    let d = half_at(b, 208);
    for (g, s) in out.scales.iter_mut().enumerate() {
        *s = d * (b[192 + g] as i8) as f32;
    }
    for n in 0..2 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..160 + 32 * n];
        let vals = &mut out.vals[128 * n..128 * n + 128];
        for l in 0..32 {
            vals[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            vals[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            vals[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            vals[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
}

/// A weight matrix (`out x in`) in a GGML block format: row-major blocks, GGML's bytes. Products
/// of one to [`ONE_ROW_MAX_ROWS`] rows read a copy of the blocks interleaved eight channels at a
/// time (`q8_0`, `q4_0`, `q4_1`, `q5_0`, `q5_1`, `q4k` on the vector paths; built on the first
/// such product: as many bytes again, 3% more for `q4k`) or the blocks as stored (the other
/// formats, and the portable path); larger ones decode every panel of 32 channels to int8 once,
/// on the first such product, and keep the panels beside the blocks (as llama.cpp repacks its
/// weights at load): one byte a weight more in memory. Neither copy is on disk or in
/// `size_bytes`; both are in a run's peak memory.
#[derive(Debug, Clone)]
pub struct BlockMatrix {
    format: BlockFormat,
    out_dim: usize,
    in_dim: usize,
    data: Vec<u8>,
    panels: OnceLock<Vec<DecodedPanel>>,
    interleaved: OnceLock<Vec<u8>>,
}

/// One panel of 32 channels decoded to int8 (see `kernels::qgemm`).
#[derive(Debug, Clone, Default)]
pub(crate) struct DecodedPanel {
    data: Vec<i8>,
    scales: Vec<f32>,
    offsets: Vec<i32>,
    mins: Vec<f32>,
}

/// An error unless rows of `in_dim` weights split into whole blocks of `format`.
fn check_width(format: BlockFormat, in_dim: usize) -> Result<()> {
    if in_dim == 0 || !in_dim.is_multiple_of(format.block_len()) {
        return Err(ModelError::Invalid(format!(
            "a {format:?} weight needs an input width that is a multiple of {}, not {in_dim}",
            format.block_len()
        )));
    }
    Ok(())
}

impl BlockMatrix {
    /// Wraps GGML's bytes of a row-major `out_dim x in_dim` weight; an error says what does not
    /// fit (an input width that is not a multiple of the block, or the wrong byte count).
    pub fn from_bytes(
        format: BlockFormat,
        out_dim: usize,
        in_dim: usize,
        data: Vec<u8>,
    ) -> Result<Self> {
        check_width(format, in_dim)?;
        let want = out_dim * in_dim / format.block_len() * format.block_bytes();
        if data.len() != want {
            return Err(ModelError::Invalid(format!(
                "a {out_dim} x {in_dim} {format:?} weight takes {want} bytes, not {}",
                data.len()
            )));
        }
        Ok(Self {
            format,
            out_dim,
            in_dim,
            data,
            panels: OnceLock::new(),
            interleaved: OnceLock::new(),
        })
    }

    /// Quantizes a row-major `out_dim x in_dim` f32 weight with candle's (GGML's) quantizer.
    pub fn quantize(
        weight: &[f32],
        out_dim: usize,
        in_dim: usize,
        format: BlockFormat,
    ) -> Result<Self> {
        check_width(format, in_dim)?;
        let t = Tensor::from_slice(weight, (out_dim, in_dim), &Device::Cpu)?;
        Self::from_qtensor(&QTensor::quantize(&t, format.ggml())?)
    }

    /// The blocks of a candle `QTensor` (`out x in`) in one of the formats above.
    pub fn from_qtensor(q: &QTensor) -> Result<Self> {
        let format = BlockFormat::from_ggml(q.dtype()).ok_or_else(|| {
            ModelError::Invalid(format!("slimbench has no block kernel for {:?}", q.dtype()))
        })?;
        let (out_dim, in_dim) = q.shape().dims2()?;
        Self::from_bytes(format, out_dim, in_dim, q.data()?.into_owned())
    }

    /// The same blocks as a candle `QTensor` on `device` (for candle's CUDA kernels).
    pub fn to_qtensor(&self, device: &Device) -> Result<QTensor> {
        let storage = QStorage::from_data(Cow::Borrowed(&self.data), device, self.format.ggml())?;
        Ok(QTensor::new(storage, (self.out_dim, self.in_dim))?)
    }

    /// The block format.
    pub fn format(&self) -> BlockFormat {
        self.format
    }

    /// Output channels.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// GGML's bytes, row-major blocks.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// Bytes of the stored blocks.
    pub fn size_bytes(&self) -> usize {
        self.data.len()
    }

    fn row_bytes(&self) -> usize {
        self.in_dim / self.format.block_len() * self.format.block_bytes()
    }

    /// The weight as f32, row-major `out x in`, equal bit for bit to candle's `dequantize`.
    pub fn dequantize(&self) -> Vec<f32> {
        let (len, bytes, group) = (
            self.format.block_len(),
            self.format.block_bytes(),
            self.format.group(),
        );
        let mins = self.format.has_mins();
        let mut out = vec![0f32; self.out_dim * self.in_dim];
        let mut dec = Decoded::default();
        with_decoder!(self.format, decode => {
            for (block, y) in self.data.chunks_exact(bytes).zip(out.chunks_exact_mut(len)) {
                decode(block, &mut dec);
                for (i, (y, v)) in y.iter_mut().zip(&dec.vals).enumerate() {
                    *y = if mins {
                        *v as f32 * dec.scales[i / group] + dec.mins[i / group]
                    } else {
                        *v as f32 * dec.scales[i / group]
                    };
                }
            }
        });
        out
    }

    fn worth_threads(&self, rows: usize) -> bool {
        qgemm::worth_threads(rows, self.in_dim, self.out_dim)
    }

    /// `dst = epilogue(x W^T)` for `rows` rows of `x` (`rows x in_dim`) into `dst`
    /// (`rows x out_dim`): activations quantized per row and group, integer sums, each tile
    /// stored once with its bias, residual and GELU.
    pub fn matmul(&self, x: &[f32], rows: usize, dst: &mut [f32], epilogue: Epilogue<'_>) {
        assert_eq!(x.len(), rows * self.in_dim, "input shape");
        assert_eq!(dst.len(), rows * self.out_dim, "output shape");
        epilogue.check(rows, self.out_dim);
        if rows <= ONE_ROW_MAX_ROWS {
            return self.matmul_rows(x, rows, dst, epilogue, Isa::get());
        }
        let parallel = self.worth_threads(rows);
        let q = QuantizedRows::quantize(
            x,
            rows,
            self.in_dim,
            self.format.group(),
            self.format.panel_bits().is_some(),
            parallel,
        );
        qgemm::matmul(self, &q, rows, dst, epilogue, parallel);
    }

    /// The one-row product on `isa`'s path, row by row, 32 channels a task.
    pub(crate) fn matmul_rows(
        &self,
        x: &[f32],
        rows: usize,
        dst: &mut [f32],
        epilogue: Epilogue<'_>,
        isa: Isa,
    ) {
        if rows == 0 || self.out_dim == 0 {
            return;
        }
        let q = QuantizedRows::quantize(x, rows, self.in_dim, 32, true, false);
        let interleaved = (isa != Isa::portable() && interleaved::supports(self.format))
            .then(|| self.interleaved());
        let signed: Vec<i8> = match interleaved {
            Some(_) => q.data.iter().map(|&v| (v ^ 0x80) as i8).collect(),
            None => Vec::new(),
        };
        let tiles = self.out_dim.div_ceil(TILE_COLS);
        // Each task writes its own channels of each row: disjoint regions.
        let dst_addr = dst.as_mut_ptr() as usize;
        let run_task = |tile: usize| {
            let c0 = tile * TILE_COLS;
            let width = TILE_COLS.min(self.out_dim - c0);
            for row in 0..rows {
                let mut sums = [[0f32; TILE_COLS]];
                match interleaved {
                    Some(w) => {
                        let groups = row * q.groups..(row + 1) * q.groups;
                        let signed_row = interleaved::SignedRow {
                            values: &signed[row * q.k_padded..(row + 1) * q.k_padded],
                            scales: &q.scales[groups.clone()],
                            sums: &q.scaled_sums[groups],
                        };
                        interleaved::interleaved_gemv(
                            self.format,
                            w,
                            self.in_dim,
                            &signed_row,
                            c0 / interleaved::LANES,
                            &mut sums[0][..width],
                            isa,
                        );
                    }
                    None => gemv(self, &q, row, c0, &mut sums[0][..width], isa),
                }
                // SAFETY: row `row`, channels `c0..c0 + width` lie in `dst` and only this task
                // writes them.
                unsafe {
                    epilogue.store(&sums, dst_addr as *mut f32, row, c0, width, self.out_dim)
                };
            }
        };
        if self.worth_threads(rows) {
            (0..tiles).into_par_iter().for_each(run_task);
        } else {
            (0..tiles).for_each(run_task);
        }
    }

    /// The blocks interleaved eight channels at a time for the one-row kernels, on first use.
    fn interleaved(&self) -> &[u8] {
        self.interleaved.get_or_init(|| {
            interleaved::interleave(self.format, &self.data, self.out_dim, self.in_dim)
        })
    }

    /// Every panel decoded to int8, on first use.
    fn panels(&self) -> &[DecodedPanel] {
        self.panels.get_or_init(|| {
            (0..self.out_dim.div_ceil(TILE_COLS))
                .into_par_iter()
                .map(|tile| {
                    let mut p = DecodedPanel::default();
                    self.decode_panel(tile, &mut p);
                    p
                })
                .collect()
        })
    }

    /// Decodes channels `32 * tile ..` into `p` in the kernel's panel layout.
    fn decode_panel(&self, tile: usize, p: &mut DecodedPanel) {
        let (len, bytes, group) = (
            self.format.block_len(),
            self.format.block_bytes(),
            self.format.group(),
        );
        let sub_stride = self.in_dim / 4 * 64;
        let groups = self.in_dim / group;
        let per_block = len / group;
        p.data.clear();
        p.data.resize(2 * sub_stride, 0);
        for v in [&mut p.scales, &mut p.mins] {
            v.clear();
            v.resize(groups * TILE_COLS, 0.0);
        }
        p.offsets.clear();
        p.offsets.resize(groups * TILE_COLS, 0);
        let col0 = tile * TILE_COLS;
        let row_bytes = self.row_bytes();
        let offset = self.format.value_offset();
        let mut dec = Decoded::default();
        with_decoder!(self.format, decode => {
            for c in 0..TILE_COLS.min(self.out_dim - col0) {
                let row = &self.data[(col0 + c) * row_bytes..(col0 + c + 1) * row_bytes];
                let lane = (c / PANEL) * sub_stride + (c % PANEL) * 4;
                for (b, block) in row.chunks_exact(bytes).enumerate() {
                    decode(block, &mut dec);
                    if offset != 0 {
                        // Unsigned values, the offset moved into the minimum (see `value_offset`).
                        for v in &mut dec.vals[..len] {
                            *v += offset;
                        }
                        for g in 0..per_block {
                            dec.mins[g] = -(offset as f32) * dec.scales[g];
                        }
                    }
                    for gi in 0..per_block {
                        let at = (b * per_block + gi) * TILE_COLS + c;
                        let span = &dec.vals[gi * group..(gi + 1) * group];
                        p.scales[at] = dec.scales[gi];
                        p.mins[at] = dec.mins[gi];
                        p.offsets[at] = 128 * span.iter().map(|&v| v as i32).sum::<i32>();
                    }
                    let k0 = b * len;
                    for (j, four) in dec.vals[..len].chunks_exact(4).enumerate() {
                        let at = lane + (k0 / 4 + j) * 64;
                        p.data[at..at + 4].copy_from_slice(four);
                    }
                }
            }
        });
    }
}

impl PanelSource for BlockMatrix {
    type Scratch = ();

    fn out_dim(&self) -> usize {
        self.out_dim
    }

    fn panel<'a>(&'a self, tile: usize, _scratch: &'a mut ()) -> Panel<'a> {
        let scratch = &self.panels()[tile];
        Panel {
            data: &scratch.data,
            sub_stride: self.in_dim / 4 * 64,
            scales: &scratch.scales,
            offsets: &scratch.offsets,
            mins: self.format.panel_bits().map(|_| &scratch.mins[..]),
            unsigned_bits: self.format.panel_bits(),
            stride: TILE_COLS,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernels::qgemm::tests::paths_here;
    use crate::kernels::qgemm::{tile_portable, tile_sums, TILE_ROWS};
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
            w.format.group()
        };
        let q = QuantizedRows::quantize(x, rows, w.in_dim, group, false, false);
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
