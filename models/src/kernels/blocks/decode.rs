//! The block types of GGML's formats, each `#[repr(C)]` with GGML's layout (its size asserted
//! against GGML's `sizeof(block_q…)`), each with its one [`GgmlBlock`] impl: its facts and its
//! scalar decoder, which reads the bytes at the type's own field offsets. Dequantization through
//! these decoders equals candle's bit for bit (tested in `blocks`).

use std::mem::{offset_of, size_of};

use candle_core::quantized::k_quants;
use half::f16;

use super::format::{BlockFormat, Decoded, GgmlBlock};

/// The f16 at byte `at` of `b`, as f32.
fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// GGML's `block_q8_0`: an f16 scale and 32 signed bytes.
#[repr(C)]
pub(crate) struct BlockQ8_0 {
    pub(crate) d: [u8; 2],
    pub(crate) qs: [i8; 32],
}

/// GGML's `block_q4_0`: an f16 scale and 32 4-bit values offset by 8.
#[repr(C)]
pub(crate) struct BlockQ4_0 {
    pub(crate) d: [u8; 2],
    pub(crate) qs: [u8; 16],
}

/// GGML's `block_q4_1`: f16 scale and minimum, 32 4-bit values.
#[repr(C)]
pub(crate) struct BlockQ4_1 {
    pub(crate) d: [u8; 2],
    pub(crate) m: [u8; 2],
    pub(crate) qs: [u8; 16],
}

/// GGML's `block_q5_0`: an f16 scale, the fifth bits, 32 low nibbles; values offset by 16.
#[repr(C)]
pub(crate) struct BlockQ5_0 {
    pub(crate) d: [u8; 2],
    pub(crate) qh: [u8; 4],
    pub(crate) qs: [u8; 16],
}

/// GGML's `block_q5_1`: f16 scale and minimum, the fifth bits, 32 low nibbles.
#[repr(C)]
pub(crate) struct BlockQ5_1 {
    pub(crate) d: [u8; 2],
    pub(crate) m: [u8; 2],
    pub(crate) qh: [u8; 4],
    pub(crate) qs: [u8; 16],
}

/// GGML's `block_q4_K`: f16 super-scale and super-minimum, 8 groups' 6-bit scales and minimums
/// packed in 12 bytes, 256 4-bit values.
#[repr(C)]
pub(crate) struct BlockQ4K {
    pub(crate) d: [u8; 2],
    pub(crate) dmin: [u8; 2],
    pub(crate) scales: [u8; 12],
    pub(crate) qs: [u8; 128],
}

/// GGML's `block_q5_K`: as `block_q4_K` with the 256 fifth bits.
#[repr(C)]
pub(crate) struct BlockQ5K {
    pub(crate) d: [u8; 2],
    pub(crate) dmin: [u8; 2],
    pub(crate) scales: [u8; 12],
    pub(crate) qh: [u8; 32],
    pub(crate) qs: [u8; 128],
}

/// GGML's `block_q6_K`: 256 6-bit values (low nibbles, high two bits), 16 signed 8-bit scales,
/// an f16 super-scale last; values offset by 32.
#[repr(C)]
pub(crate) struct BlockQ6K {
    pub(crate) ql: [u8; 128],
    pub(crate) qh: [u8; 64],
    pub(crate) scales: [i8; 16],
    pub(crate) d: [u8; 2],
}

// GGML's block sizes (ggml-common.h): the layouts above are byte for byte GGML's.
const _: () = assert!(size_of::<BlockQ8_0>() == 34);
const _: () = assert!(size_of::<BlockQ4_0>() == 18);
const _: () = assert!(size_of::<BlockQ4_1>() == 20);
const _: () = assert!(size_of::<BlockQ5_0>() == 22);
const _: () = assert!(size_of::<BlockQ5_1>() == 24);
const _: () = assert!(size_of::<BlockQ4K>() == 144);
const _: () = assert!(size_of::<BlockQ5K>() == 176);
const _: () = assert!(size_of::<BlockQ6K>() == 210);
// candle's block types have the same layout, so GGML's quantizer (candle's `from_float`) writes
// exactly these bytes.
const _: () = {
    assert!(size_of::<BlockQ8_0>() == size_of::<k_quants::BlockQ8_0>());
    assert!(size_of::<BlockQ4_0>() == size_of::<k_quants::BlockQ4_0>());
    assert!(size_of::<BlockQ4_1>() == size_of::<k_quants::BlockQ4_1>());
    assert!(size_of::<BlockQ5_0>() == size_of::<k_quants::BlockQ5_0>());
    assert!(size_of::<BlockQ5_1>() == size_of::<k_quants::BlockQ5_1>());
    assert!(size_of::<BlockQ4K>() == size_of::<k_quants::BlockQ4K>());
    assert!(size_of::<BlockQ5K>() == size_of::<k_quants::BlockQ5K>());
    assert!(size_of::<BlockQ6K>() == size_of::<k_quants::BlockQ6K>());
};

impl GgmlBlock for BlockQ8_0 {
    const NAME: &'static str = "q8_0";
    type Candle = k_quants::BlockQ8_0;
    const INTERLEAVED: bool = true;
    const BLOCK_LEN: usize = 32;
    const GROUP: usize = 32;
    const VALUE_OFFSET: i8 = 0;
    const PANEL_BITS: Option<u32> = None;
    const HAS_MINS: bool = false;
    const FALLBACK: &'static [BlockFormat] = &[BlockFormat::Q8_0];

    #[inline(always)]
    fn decode(b: &[u8], out: &mut Decoded) {
        out.scales[0] = half_at(b, offset_of!(Self, d));
        let qs = offset_of!(Self, qs);
        for (v, q) in out.vals[..32].iter_mut().zip(&b[qs..qs + 32]) {
            *v = *q as i8;
        }
    }
}

/// The 32 4-bit values of `q4_0`/`q4_1` at `qs`, low nibbles first, less `offset`.
#[inline(always)]
fn four_bits(qs: &[u8], vals: &mut [i8], offset: i8) {
    let (lo, hi) = vals[..32].split_at_mut(16);
    for ((l, h), q) in lo.iter_mut().zip(hi).zip(&qs[..16]) {
        *l = (q & 0x0F) as i8 - offset;
        *h = (q >> 4) as i8 - offset;
    }
}

impl GgmlBlock for BlockQ4_0 {
    const NAME: &'static str = "q4_0";
    type Candle = k_quants::BlockQ4_0;
    const INTERLEAVED: bool = true;
    const BLOCK_LEN: usize = 32;
    const GROUP: usize = 32;
    const VALUE_OFFSET: i8 = 8;
    const PANEL_BITS: Option<u32> = Some(4);
    const HAS_MINS: bool = false;
    const FALLBACK: &'static [BlockFormat] = &[BlockFormat::Q4_0];

    #[inline(always)]
    fn decode(b: &[u8], out: &mut Decoded) {
        out.scales[0] = half_at(b, offset_of!(Self, d));
        four_bits(&b[offset_of!(Self, qs)..], &mut out.vals, 8);
    }
}

impl GgmlBlock for BlockQ4_1 {
    const NAME: &'static str = "q4_1";
    type Candle = k_quants::BlockQ4_1;
    const INTERLEAVED: bool = true;
    const BLOCK_LEN: usize = 32;
    const GROUP: usize = 32;
    const VALUE_OFFSET: i8 = 0;
    const PANEL_BITS: Option<u32> = Some(4);
    const HAS_MINS: bool = true;
    const FALLBACK: &'static [BlockFormat] = &[BlockFormat::Q4_1];

    #[inline(always)]
    fn decode(b: &[u8], out: &mut Decoded) {
        out.scales[0] = half_at(b, offset_of!(Self, d));
        out.mins[0] = half_at(b, offset_of!(Self, m));
        four_bits(&b[offset_of!(Self, qs)..], &mut out.vals, 0);
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

impl GgmlBlock for BlockQ5_0 {
    const NAME: &'static str = "q5_0";
    type Candle = k_quants::BlockQ5_0;
    const INTERLEAVED: bool = true;
    const FIFTH_BITS: bool = true;
    const BLOCK_LEN: usize = 32;
    const GROUP: usize = 32;
    const VALUE_OFFSET: i8 = 16;
    const PANEL_BITS: Option<u32> = Some(5);
    const HAS_MINS: bool = false;
    const FALLBACK: &'static [BlockFormat] = &[BlockFormat::Q5_0];

    #[inline(always)]
    fn decode(b: &[u8], out: &mut Decoded) {
        out.scales[0] = half_at(b, offset_of!(Self, d));
        let (qh, qs) = (offset_of!(Self, qh), offset_of!(Self, qs));
        five_bits(&b[qh..qh + 4], &b[qs..qs + 16], &mut out.vals, 16);
    }
}

impl GgmlBlock for BlockQ5_1 {
    const NAME: &'static str = "q5_1";
    type Candle = k_quants::BlockQ5_1;
    const INTERLEAVED: bool = true;
    const FIFTH_BITS: bool = true;
    const BLOCK_LEN: usize = 32;
    const GROUP: usize = 32;
    const VALUE_OFFSET: i8 = 0;
    const PANEL_BITS: Option<u32> = Some(5);
    const HAS_MINS: bool = true;
    const FALLBACK: &'static [BlockFormat] = &[BlockFormat::Q5_1];

    #[inline(always)]
    fn decode(b: &[u8], out: &mut Decoded) {
        out.scales[0] = half_at(b, offset_of!(Self, d));
        out.mins[0] = half_at(b, offset_of!(Self, m));
        let (qh, qs) = (offset_of!(Self, qh), offset_of!(Self, qs));
        five_bits(&b[qh..qh + 4], &b[qs..qs + 16], &mut out.vals, 0);
    }
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

/// Scales and minimums of the 8 groups of a `q4k`/`q5k` block, as candle computes them; the two
/// share the layout of their first three fields.
#[inline(always)]
fn k4_scales(b: &[u8], out: &mut Decoded) {
    let (d, dmin) = (
        half_at(b, offset_of!(BlockQ4K, d)),
        half_at(b, offset_of!(BlockQ4K, dmin)),
    );
    let scales = offset_of!(BlockQ4K, scales);
    for g in 0..8 {
        let (sc, m) = scale_min_k4(g, &b[scales..scales + 12]);
        out.scales[g] = d * sc as f32;
        out.mins[g] = -(dmin * m as f32);
    }
}

const _: () = assert!(
    offset_of!(BlockQ4K, d) == offset_of!(BlockQ5K, d)
        && offset_of!(BlockQ4K, dmin) == offset_of!(BlockQ5K, dmin)
        && offset_of!(BlockQ4K, scales) == offset_of!(BlockQ5K, scales)
);

impl GgmlBlock for BlockQ4K {
    const NAME: &'static str = "q4k";
    type Candle = k_quants::BlockQ4K;
    const INTERLEAVED: bool = true;
    const BLOCK_LEN: usize = 256;
    const GROUP: usize = 32;
    const VALUE_OFFSET: i8 = 0;
    const PANEL_BITS: Option<u32> = Some(4);
    const HAS_MINS: bool = true;
    const FALLBACK: &'static [BlockFormat] =
        &[BlockFormat::Q4K, BlockFormat::Q4_1, BlockFormat::Q8_0];

    #[inline(always)]
    fn decode(b: &[u8], out: &mut Decoded) {
        k4_scales(b, out);
        let q0 = offset_of!(Self, qs);
        for j in 0..4 {
            let qs = &b[q0 + 32 * j..q0 + 32 * j + 32];
            let (lo, hi) = out.vals[64 * j..64 * j + 64].split_at_mut(32);
            for ((l, h), q) in lo.iter_mut().zip(hi).zip(qs) {
                *l = (q & 0xF) as i8;
                *h = (q >> 4) as i8;
            }
        }
    }
}

impl GgmlBlock for BlockQ5K {
    const NAME: &'static str = "q5k";
    type Candle = k_quants::BlockQ5K;
    const INTERLEAVED: bool = false;
    const BLOCK_LEN: usize = 256;
    const GROUP: usize = 32;
    const VALUE_OFFSET: i8 = 0;
    const PANEL_BITS: Option<u32> = Some(5);
    const HAS_MINS: bool = true;
    const FALLBACK: &'static [BlockFormat] =
        &[BlockFormat::Q5K, BlockFormat::Q5_1, BlockFormat::Q8_0];

    #[inline(always)]
    fn decode(b: &[u8], out: &mut Decoded) {
        k4_scales(b, out);
        let qh0 = offset_of!(Self, qh);
        let qh = &b[qh0..qh0 + 32];
        let q0 = offset_of!(Self, qs);
        for j in 0..4 {
            let ql = &b[q0 + 32 * j..q0 + 32 * j + 32];
            let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
            let (lo, hi) = out.vals[64 * j..64 * j + 64].split_at_mut(32);
            for (((l, h), q), qh) in lo.iter_mut().zip(hi).zip(ql).zip(qh) {
                *l = ((q & 0xF) | if qh & u1 != 0 { 16 } else { 0 }) as i8;
                *h = ((q >> 4) | if qh & u2 != 0 { 16 } else { 0 }) as i8;
            }
        }
    }
}

impl GgmlBlock for BlockQ6K {
    const NAME: &'static str = "q6k";
    type Candle = k_quants::BlockQ6K;
    const INTERLEAVED: bool = false;
    const BLOCK_LEN: usize = 256;
    const GROUP: usize = 16;
    const VALUE_OFFSET: i8 = 32;
    const PANEL_BITS: Option<u32> = Some(6);
    const HAS_MINS: bool = false;
    const FALLBACK: &'static [BlockFormat] = &[BlockFormat::Q6K, BlockFormat::Q8_0];

    #[inline(always)]
    fn decode(b: &[u8], out: &mut Decoded) {
        let d = half_at(b, offset_of!(Self, d));
        let sc = offset_of!(Self, scales);
        for (g, s) in out.scales.iter_mut().enumerate() {
            *s = d * (b[sc + g] as i8) as f32;
        }
        let (ql0, qh0) = (offset_of!(Self, ql), offset_of!(Self, qh));
        for n in 0..2 {
            let ql = &b[ql0 + 64 * n..ql0 + 64 * n + 64];
            let qh = &b[qh0 + 32 * n..qh0 + 32 * n + 32];
            let vals = &mut out.vals[128 * n..128 * n + 128];
            for l in 0..32 {
                vals[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
                vals[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                vals[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                vals[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            }
        }
    }
}
