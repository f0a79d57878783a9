//! The vocabulary of GGML's block formats: [`BlockFormat`], a format's name at run time; the
//! [`GgmlBlock`] trait that each format's block type (in `decode`) implements once, stating its
//! facts, the kernels it has, its decoder and its quantizer; and [`Decoded`], one block decoded. The blocks module maps a name to
//! its type in one macro, so every fact of a format is read from its impl.

use candle_core::quantized::k_quants::GgmlType;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::error::Result;

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

/// What a block format is: its layout (the implementing type, `#[repr(C)]`, GGML's bytes), its
/// facts and its decoder.
pub(crate) trait GgmlBlock: Sized {
    /// The name slimbench gives the format, in techniques and records.
    const NAME: &'static str;
    /// candle's block type of the same layout (sizes asserted equal where the type is defined),
    /// whose quantizer is GGML's.
    type Candle: GgmlType;
    /// candle's dtype of it.
    const DTYPE: GgmlDType = <Self::Candle as GgmlType>::DTYPE;
    /// Weights per block.
    const BLOCK_LEN: usize;
    /// Bytes per block: the type's size, asserted equal to GGML's where the type is defined.
    const BYTES: usize = std::mem::size_of::<Self>();
    /// Weights that share one scale (and minimum): the group of the kernel.
    const GROUP: usize;
    /// For values stored unsigned and offset, the offset (0 for the others): the int8 panels keep
    /// the unsigned value and fold `-offset x scale` into the group's minimum.
    const VALUE_OFFSET: i8;
    /// Bits of the unsigned values in the int8 panels; `None` for signed bytes (`q8_0`).
    const PANEL_BITS: Option<u32>;
    /// True when each group adds a minimum (`w = d q + m`).
    const HAS_MINS: bool;
    /// The formats tried, in order, when this one is asked for and a layer's width does not fit
    /// its block (itself first; f32, not listed, is last).
    const FALLBACK: &'static [BlockFormat];
    /// True when the format has an interleaved one-row kernel (`interleaved`: eight channels
    /// a group); the others run the one-channel-at-a-time one (`gemv`). Both have the many-row
    /// integer kernel (`qgemm`, through the decoder below).
    const INTERLEAVED: bool;
    /// True for the 32-blocks with a fifth bit per value (`q5_0`, `q5_1`).
    const FIFTH_BITS: bool = false;
    /// Decodes one block (`BYTES` bytes in GGML's layout) into `out`.
    fn decode(block: &[u8], out: &mut Decoded);

    /// A row-major `out_dim x in_dim` f32 weight in GGML's bytes, by GGML's quantizer (candle's
    /// `QTensor::quantize`, which runs [`Self::Candle`]'s `from_float` row by row); `in_dim` a
    /// whole number of blocks.
    fn quantize(weight: &[f32], out_dim: usize, in_dim: usize) -> Result<Vec<u8>> {
        let t = Tensor::from_slice(weight, (out_dim, in_dim), &Device::Cpu)?;
        Ok(QTensor::quantize(&t, Self::DTYPE)?.data()?.into_owned())
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
