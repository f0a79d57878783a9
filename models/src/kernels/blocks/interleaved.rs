//! One-row products on `q8_0`, `q4_0`, `q4_1`, `q5_0`, `q5_1` and `q4k` weights interleaved eight
//! channels at a time (as llama.cpp repacks its weights for the CPU at load): in each block, the
//! eight channels' scales sit side by side, then their values four bytes per channel in turn, so
//! one 256-bit load holds four inputs of eight channels. Each product broadcasts four activations
//! to every lane and multiplies them by eight channels in one instruction (`vpdpbusd`, or
//! `vpmaddubsw` + `vpmaddwd` on AVX2), and each block's scales are applied to eight channels at
//! once: about a third of the instructions per weight of the one-channel-at-a-time kernel in
//! [`super::gemv`], which is bound by instructions rather than memory at a language model's
//! widths. The interleaved copy of a 32-block format is GGML's bytes rearranged (the same size):
//! `q8_0` values are stored plus 128, unsigned, so that `vpdpbusd` takes them as its unsigned
//! operand, and the fifth bits of `q5_0`/`q5_1` are grouped by the bytes of nibbles they belong
//! to. `q4k` keeps its 6-bit scales and minimums unpacked to a byte each (3% more bytes).

use super::BlockFormat;
use crate::kernels::isa::{Isa, Path};

/// Channels interleaved in one group (the i32 lanes of a 256-bit vector).
pub(crate) const LANES: usize = 8;

/// Whether `format` has an interleaved one-row kernel (its [`GgmlBlock::INTERLEAVED`]).
///
/// [`GgmlBlock::INTERLEAVED`]: super::format::GgmlBlock::INTERLEAVED
pub(crate) fn supports(format: BlockFormat) -> bool {
    format.has_interleaved_kernel()
}

/// Whether a 32-block format has a fifth bit per value (`q5_0`, `q5_1`).
fn five_bit(format: BlockFormat) -> bool {
    format.has_fifth_bits()
}

/// Where the parts of one interleaved `q4k` block of eight channels lie: the f16 `d`s, the f16
/// `dmin`s, the 6-bit scales and minimums unpacked to a byte each (`[group][lane]`), then the
/// nibbles (4 bytes per lane in turn, as GGML orders them within each 32 bytes).
mod q4k_at {
    pub(super) const D: usize = 0;
    pub(super) const DMIN: usize = 16;
    pub(super) const SCALES: usize = 32;
    pub(super) const MINS: usize = 96;
    pub(super) const VALUES: usize = 160;
    pub(super) const BYTES: usize = VALUES + 8 * 128;
}

/// Bytes of one interleaved block of eight channels: GGML's, but for `q4k`, whose scales and
/// minimums are unpacked (1,184 bytes against GGML's 1,152).
pub(crate) fn group_block_bytes(format: BlockFormat) -> usize {
    match format {
        BlockFormat::Q4K => q4k_at::BYTES,
        _ => LANES * format.block_bytes(),
    }
}

/// Bytes of the header of one interleaved block: the eight channels' f16 scales, then for
/// `q4_1` and `q5_1` their f16 minimums.
fn header_bytes(format: BlockFormat) -> usize {
    if format.has_mins() {
        4 * LANES
    } else {
        2 * LANES
    }
}

/// Where the values of an interleaved 32-block start: after the header and, for `q5_0` and
/// `q5_1`, the eight channels' fifth bits (4 bytes each, rearranged by [`fifth_bits_by_chunk`]).
fn values_at(format: BlockFormat) -> usize {
    header_bytes(format) + if five_bit(format) { 4 * LANES } else { 0 }
}

/// GGML's 32 fifth bits of a `q5` block (bit `i` for value `i`) rearranged so that byte `t`
/// holds the bits of the values that the bytes `4t..4t + 4` of nibbles hold: those of values
/// `4t..4t + 4` in its low half and of values `16 + 4t..` in its high half.
fn fifth_bits_by_chunk(qh: u32) -> [u8; 4] {
    std::array::from_fn(|t| {
        let low = (qh >> (4 * t)) & 0xF;
        let high = (qh >> (16 + 4 * t)) & 0xF;
        (low | high << 4) as u8
    })
}

/// GGML's bytes of `out_dim` channels of `in_dim / 32` blocks each, interleaved eight channels a
/// group (the last group padded with zero blocks), groups one after another, each group's blocks
/// in order.
pub(crate) fn interleave(
    format: BlockFormat,
    data: &[u8],
    out_dim: usize,
    in_dim: usize,
) -> Vec<u8> {
    assert!(supports(format), "no interleaved kernel for {format:?}");
    let bytes = format.block_bytes();
    let blocks = in_dim / format.block_len();
    let row_bytes = blocks * bytes;
    let group_bytes = group_block_bytes(format);
    let groups = out_dim.div_ceil(LANES);
    let mut out = vec![0u8; groups * blocks * group_bytes];
    for g in 0..groups {
        for b in 0..blocks {
            let dst = &mut out[(g * blocks + b) * group_bytes..][..group_bytes];
            for lane in 0..LANES.min(out_dim - g * LANES) {
                let c = g * LANES + lane;
                let src = &data[c * row_bytes + b * bytes..][..bytes];
                if format == BlockFormat::Q4K {
                    interleave_q4k(src, lane, dst);
                } else {
                    interleave_32(format, src, lane, dst);
                }
            }
        }
    }
    out
}

/// One channel's 32-block into lane `lane` of an interleaved block.
fn interleave_32(format: BlockFormat, src: &[u8], lane: usize, dst: &mut [u8]) {
    let values = if format == BlockFormat::Q8_0 { 32 } else { 16 };
    let (head, values) = src.split_at(src.len() - values);
    let halves = if format.has_mins() { 2 } else { 1 };
    // Scale (and minimum): f16s side by side.
    for (h, half) in head[..2 * halves].chunks_exact(2).enumerate() {
        dst[2 * (h * LANES + lane)..][..2].copy_from_slice(half);
    }
    if five_bit(format) {
        let qh = u32::from_le_bytes([
            head[2 * halves],
            head[2 * halves + 1],
            head[2 * halves + 2],
            head[2 * halves + 3],
        ]);
        dst[header_bytes(format) + 4 * lane..][..4].copy_from_slice(&fifth_bits_by_chunk(qh));
    }
    for (j, four) in values.chunks_exact(4).enumerate() {
        let at = values_at(format) + j * 4 * LANES + 4 * lane;
        for (d, &v) in dst[at..at + 4].iter_mut().zip(four) {
            *d = if format == BlockFormat::Q8_0 {
                v ^ 0x80
            } else {
                v
            };
        }
    }
}

/// One channel's `q4k` block into lane `lane` of an interleaved block.
fn interleave_q4k(src: &[u8], lane: usize, dst: &mut [u8]) {
    use super::decode::BlockQ4K;
    use std::mem::offset_of;
    let (d, dmin) = (offset_of!(BlockQ4K, d), offset_of!(BlockQ4K, dmin));
    let (scales, qs) = (offset_of!(BlockQ4K, scales), offset_of!(BlockQ4K, qs));
    dst[q4k_at::D + 2 * lane..][..2].copy_from_slice(&src[d..d + 2]);
    dst[q4k_at::DMIN + 2 * lane..][..2].copy_from_slice(&src[dmin..dmin + 2]);
    for g in 0..8 {
        let (sc, m) = super::scale_min_k4(g, &src[scales..scales + 12]);
        dst[q4k_at::SCALES + LANES * g + lane] = sc;
        dst[q4k_at::MINS + LANES * g + lane] = m;
    }
    for (j, four) in src[qs..].chunks_exact(4).enumerate() {
        let at = q4k_at::VALUES + j * 4 * LANES + 4 * lane;
        dst[at..at + 4].copy_from_slice(four);
    }
}

/// The activations of one row as [`interleaved_gemv`] reads them: signed bytes, and per 32
/// inputs the scale and the scale times the sum.
pub(crate) struct SignedRow<'a> {
    /// `in_dim` signed bytes.
    pub(crate) values: &'a [i8],
    /// One scale per 32 inputs.
    pub(crate) scales: &'a [f32],
    /// One scaled sum per 32 inputs.
    pub(crate) sums: &'a [f32],
}

/// Sums `x W^T` for the channels of groups `g0..` into `out` (eight channels a group; the last
/// group may be cut short by `out`'s length) from the interleaved weight `w` of `in_dim` inputs.
///
/// # Panics
/// When `out` reaches past the groups `w` holds or the row is shorter than `in_dim`.
pub(crate) fn interleaved_gemv(
    format: BlockFormat,
    w: &[u8],
    in_dim: usize,
    row: &SignedRow<'_>,
    g0: usize,
    out: &mut [f32],
    isa: Isa,
) {
    assert!(supports(format), "no interleaved kernel for {format:?}");
    let blocks = in_dim / format.block_len();
    let group_bytes = blocks * group_block_bytes(format);
    assert!(
        (g0 + out.len().div_ceil(LANES)) * group_bytes <= w.len(),
        "channels past the weight"
    );
    let groups = in_dim / 32;
    assert!(
        row.values.len() >= in_dim && row.scales.len() >= groups && row.sums.len() >= groups,
        "row shape"
    );
    #[cfg(target_arch = "x86_64")]
    match isa.path() {
        Path::Avx512Vnni | Path::AvxVnniEvex => {
            // SAFETY: the CPU has the features of each path (`isa` was made by detection); the
            // groups and the row lie inside `w` and `row` (asserted above).
            return unsafe { x86::gemv_vnni(format, w, blocks, row, g0, out) };
        }
        // SAFETY: as above.
        Path::AvxVnni => return unsafe { x86::gemv_avx_vnni(format, w, blocks, row, g0, out) },
        Path::Avx2 | Path::Avx512 => {
            // SAFETY: as above.
            return unsafe { x86::gemv_avx2(format, w, blocks, row, g0, out) };
        }
        Path::Portable => {}
    }
    let _ = isa;
    gemv_portable(format, w, blocks, row, g0, out);
}

/// The same sums in plain Rust (the reference the vector paths are tested against, and the path
/// of a CPU without AVX2).
fn gemv_portable(
    format: BlockFormat,
    w: &[u8],
    blocks: usize,
    row: &SignedRow<'_>,
    g0: usize,
    out: &mut [f32],
) {
    let group_bytes = group_block_bytes(format);
    for (i, o) in out.iter_mut().enumerate() {
        let (g, lane) = (g0 + i / LANES, i % LANES);
        *o = (0..blocks)
            .map(|b| {
                let blk = &w[(g * blocks + b) * group_bytes..][..group_bytes];
                if format == BlockFormat::Q4K {
                    block_q4k_portable(blk, lane, row, 8 * b)
                } else {
                    block_32_portable(format, blk, lane, row, b)
                }
            })
            .sum();
    }
}

/// The f16 number `i` of `b`.
fn half_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32()
}

/// Lane `lane` of an interleaved 32-block times activation group `k`.
fn block_32_portable(
    format: BlockFormat,
    blk: &[u8],
    lane: usize,
    row: &SignedRow<'_>,
    k: usize,
) -> f32 {
    let head = values_at(format);
    let a = &row.values[32 * k..32 * k + 32];
    let mut dot = 0i32;
    for j in 0..(blk.len() - head) / (4 * LANES) {
        let four = &blk[head + j * 4 * LANES + 4 * lane..][..4];
        let fifth = if five_bit(format) {
            blk[header_bytes(format) + 4 * lane + j]
        } else {
            0
        };
        for (t, &v) in four.iter().enumerate() {
            dot += match format {
                BlockFormat::Q8_0 => (v ^ 0x80) as i8 as i32 * a[4 * j + t] as i32,
                _ => {
                    let lo = (v & 0x0F) | ((fifth >> t) & 1) << 4;
                    let hi = (v >> 4) | ((fifth >> (4 + t)) & 1) << 4;
                    lo as i32 * a[4 * j + t] as i32 + hi as i32 * a[16 + 4 * j + t] as i32
                }
            };
        }
    }
    let d = half_at(blk, lane);
    let (da, sum) = (row.scales[k], row.sums[k]);
    match format {
        BlockFormat::Q8_0 => d * (dot as f32 * da),
        BlockFormat::Q4_0 => d * (dot as f32 * da - 8.0 * sum),
        BlockFormat::Q5_0 => d * (dot as f32 * da - 16.0 * sum),
        _ => d * (dot as f32 * da) + half_at(blk, LANES + lane) * sum,
    }
}

/// Lane `lane` of an interleaved `q4k` block times activation groups `k0..k0 + 8`.
fn block_q4k_portable(blk: &[u8], lane: usize, row: &SignedRow<'_>, k0: usize) -> f32 {
    let (d, dmin) = (
        half_at(&blk[q4k_at::D..], lane),
        half_at(&blk[q4k_at::DMIN..], lane),
    );
    let (mut scaled, mut mins) = (0f32, 0f32);
    for sub in 0..8 {
        // Sub-block `sub` is the low (even) or high (odd) nibbles of 32 bytes `sub / 2`.
        let (j, high) = (sub / 2, sub % 2 == 1);
        let k = k0 + sub;
        let a = &row.values[32 * k..32 * k + 32];
        let mut dot = 0i32;
        for t in 0..8 {
            let four = &blk[q4k_at::VALUES + j * 256 + t * 32 + 4 * lane..][..4];
            for (u, &v) in four.iter().enumerate() {
                let q = if high { v >> 4 } else { v & 0x0F };
                dot += q as i32 * a[4 * t + u] as i32;
            }
        }
        let sc = blk[q4k_at::SCALES + LANES * sub + lane] as f32;
        let m = blk[q4k_at::MINS + LANES * sub + lane] as f32;
        scaled += dot as f32 * (sc * row.scales[k]);
        mins += m * row.sums[k];
    }
    d * scaled - dmin * mins
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::*;
    use crate::kernels::x86::avx_vnni::{Dpbusd256, EvexDpbusd, VexDpbusd};

    /// Per-lane multiply-adds of four unsigned bytes by four signed bytes.
    trait Madd {
        /// What `madd_q8` leaves in each lane beyond the product: this times the sum of the
        /// activations.
        const Q8_OFFSET: f32;
        /// `acc + sum(u * s)` per lane, `u` at most 127 (no `vpmaddubsw` saturation).
        unsafe fn madd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;
        /// `acc + sum((u - 128) * s) + Q8_OFFSET sum(s)` per lane, `u` a `q8_0` value plus 128.
        unsafe fn madd_q8(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;

        /// The sums of four 32-byte chunks of nibbles from `v`: low nibbles times the
        /// activations from `a_lo`, high ones times those from `a_hi` (four more per chunk),
        /// each value with its fifth bit from `fifth` where the format has one.
        #[inline(always)]
        unsafe fn nibble_sums(
            v: *const u8,
            fifth: Option<__m256i>,
            a_lo: *const i8,
            a_hi: *const i8,
        ) -> (__m256i, __m256i) {
            // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
            // CPU features it enables were detected, and its pointers and lengths are in bounds.
            unsafe {
                let low = _mm256_set1_epi8(0x0F);
                let (mut lo_sum, mut hi_sum) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                for t in 0..4 {
                    let (lo, hi) = values(v, fifth, t, low);
                    lo_sum = Self::madd(lo_sum, lo, four(a_lo.add(4 * t)));
                    hi_sum = Self::madd(hi_sum, hi, four(a_hi.add(4 * t)));
                }
                (lo_sum, hi_sum)
            }
        }
    }

    /// `vpmaddubsw` + `vpmaddwd`; `q8_0` through GGML's sign trick (no saturation).
    struct Avx2;
    impl Madd for Avx2 {
        const Q8_OFFSET: f32 = 0.0;
        #[inline(always)]
        unsafe fn madd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
            // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
            // CPU features it enables were detected, and its pointers and lengths are in bounds.
            unsafe {
                let pairs = _mm256_maddubs_epi16(u, s);
                _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
            }
        }
        #[inline(always)]
        unsafe fn madd_q8(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
            // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
            // CPU features it enables were detected, and its pointers and lengths are in bounds.
            unsafe {
                let w = _mm256_xor_si256(u, _mm256_set1_epi8(i8::MIN));
                Self::madd(acc, _mm256_sign_epi8(w, w), _mm256_sign_epi8(s, w))
            }
        }
        /// The pairs of products are summed in i16 across the four chunks before `vpmaddwd`
        /// (at most 4 x 2 x 31 x 127 = 31,496: no overflow), one `vpmaddwd` per chunk saved.
        #[inline(always)]
        unsafe fn nibble_sums(
            v: *const u8,
            fifth: Option<__m256i>,
            a_lo: *const i8,
            a_hi: *const i8,
        ) -> (__m256i, __m256i) {
            // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
            // CPU features it enables were detected, and its pointers and lengths are in bounds.
            unsafe {
                let low = _mm256_set1_epi8(0x0F);
                let (mut lo_sum, mut hi_sum) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                for t in 0..4 {
                    let (lo, hi) = values(v, fifth, t, low);
                    lo_sum =
                        _mm256_add_epi16(lo_sum, _mm256_maddubs_epi16(lo, four(a_lo.add(4 * t))));
                    hi_sum =
                        _mm256_add_epi16(hi_sum, _mm256_maddubs_epi16(hi, four(a_hi.add(4 * t))));
                }
                let ones = _mm256_set1_epi16(1);
                (
                    _mm256_madd_epi16(lo_sum, ones),
                    _mm256_madd_epi16(hi_sum, ones),
                )
            }
        }
    }

    /// `vpdpbusd` on 256 bits, in either encoding: `q8_0`'s offset of 128 is taken out
    /// afterwards.
    impl<D: Dpbusd256> Madd for D {
        const Q8_OFFSET: f32 = 128.0;
        #[inline(always)]
        unsafe fn madd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
            // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
            // CPU features it enables were detected, and its pointers and lengths are in bounds.
            unsafe { D::dpbusd(acc, u, s) }
        }
        #[inline(always)]
        unsafe fn madd_q8(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
            // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
            // CPU features it enables were detected, and its pointers and lengths are in bounds.
            unsafe { D::dpbusd(acc, u, s) }
        }
    }

    /// Chunk `t` of 32 bytes of nibbles from `v` as values: the low nibbles and the high ones,
    /// each with its fifth bit (bit 4) from byte `t` of each lane of `fifth` where given.
    #[inline(always)]
    unsafe fn values(
        v: *const u8,
        fifth: Option<__m256i>,
        t: usize,
        low: __m256i,
    ) -> (__m256i, __m256i) {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe {
            let x = _mm256_loadu_si256(v.add(32 * t) as *const __m256i);
            let mut lo = _mm256_and_si256(x, low);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
            if let Some(qh) = fifth {
                // Byte t of each lane into all four of its bytes, then bit u (low) or 4 + u (high)
                // of byte u to 0x10.
                let spread = _mm256_add_epi8(
                    _mm256_set1_epi8(t as i8),
                    _mm256_set_epi32(
                        0x0C0C_0C0C,
                        0x0808_0808,
                        0x0404_0404,
                        0,
                        0x0C0C_0C0C,
                        0x0808_0808,
                        0x0404_0404,
                        0,
                    ),
                );
                let bits = _mm256_shuffle_epi8(qh, spread);
                let bit = _mm256_set1_epi8(0x10);
                for (mask, values) in [(0x0804_0201, &mut lo), (0x8040_2010u32 as i32, &mut hi)] {
                    let mask = _mm256_set1_epi32(mask);
                    let set = _mm256_cmpeq_epi8(_mm256_and_si256(bits, mask), mask);
                    *values = _mm256_or_si256(*values, _mm256_and_si256(set, bit));
                }
            }
            (lo, hi)
        }
    }

    /// Four activations from `p` in every lane.
    #[inline(always)]
    unsafe fn four(p: *const i8) -> __m256i {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe { _mm256_set1_epi32((p as *const i32).read_unaligned()) }
    }

    /// Eight f16 at `p` as f32.
    #[inline(always)]
    unsafe fn halves(p: *const u8) -> __m256 {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }

    /// The eight channels of one group: every block's integer sums, scaled per block.
    #[inline(always)]
    unsafe fn group<M: Madd>(
        format: BlockFormat,
        w: *const u8,
        blocks: usize,
        row: &SignedRow<'_>,
    ) -> __m256 {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe {
            let bytes = group_block_bytes(format);
            let a = row.values.as_ptr();
            let (mut acc, mut acc_min) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for b in 0..blocks {
                let blk = w.add(b * bytes);
                let ab = a.add(32 * b);
                let da = *row.scales.get_unchecked(b);
                let sum = *row.sums.get_unchecked(b);
                let (mut i0, mut i1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                match format {
                    BlockFormat::Q8_0 => {
                        let v = blk.add(2 * LANES);
                        for j in 0..4 {
                            let x0 = _mm256_loadu_si256(v.add(64 * j) as *const __m256i);
                            let x1 = _mm256_loadu_si256(v.add(64 * j + 32) as *const __m256i);
                            i0 = M::madd_q8(i0, x0, four(ab.add(8 * j)));
                            i1 = M::madd_q8(i1, x1, four(ab.add(8 * j + 4)));
                        }
                        let dot = _mm256_cvtepi32_ps(_mm256_add_epi32(i0, i1));
                        let v = _mm256_fmsub_ps(
                            dot,
                            _mm256_set1_ps(da),
                            _mm256_set1_ps(M::Q8_OFFSET * sum),
                        );
                        acc = _mm256_fmadd_ps(v, halves(blk), acc);
                    }
                    _ => {
                        let fifth = five_bit(format).then(|| {
                            _mm256_loadu_si256(blk.add(header_bytes(format)) as *const __m256i)
                        });
                        (i0, i1) =
                            M::nibble_sums(blk.add(values_at(format)), fifth, ab, ab.add(16));
                        let dot = _mm256_cvtepi32_ps(_mm256_add_epi32(i0, i1));
                        if !format.has_mins() {
                            // q4_0 and q5_0: unsigned values less 8 or 16.
                            let offset = if format == BlockFormat::Q4_0 {
                                8.0
                            } else {
                                16.0
                            };
                            let v = _mm256_fmsub_ps(
                                dot,
                                _mm256_set1_ps(da),
                                _mm256_set1_ps(offset * sum),
                            );
                            acc = _mm256_fmadd_ps(v, halves(blk), acc);
                        } else {
                            let d = halves(blk);
                            acc = _mm256_fmadd_ps(_mm256_mul_ps(dot, _mm256_set1_ps(da)), d, acc);
                            acc_min = _mm256_fmadd_ps(
                                halves(blk.add(2 * LANES)),
                                _mm256_set1_ps(sum),
                                acc_min,
                            );
                        }
                    }
                }
            }
            _mm256_add_ps(acc, acc_min)
        }
    }

    /// The eight channels of one group in `q4k`: each sub-block's integer sums scaled by its
    /// 6-bit scale and the activations' scale, each block's by its `d`; minimums alike.
    #[inline(always)]
    unsafe fn group_q4k<M: Madd>(w: *const u8, blocks: usize, row: &SignedRow<'_>) -> __m256 {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe {
            let a = row.values.as_ptr();
            let (mut acc, mut acc_min) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for b in 0..blocks {
                let blk = w.add(b * q4k_at::BYTES);
                let (mut scaled, mut mins) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for j in 0..4 {
                    let ab = a.add(256 * b + 64 * j);
                    let v = blk.add(q4k_at::VALUES + 256 * j);
                    let (lo0, hi0) = M::nibble_sums(v, None, ab, ab.add(32));
                    let (lo1, hi1) = M::nibble_sums(v.add(128), None, ab.add(16), ab.add(48));
                    let (i0, i1) = (_mm256_add_epi32(lo0, lo1), _mm256_add_epi32(hi0, hi1));
                    for (h, dot) in [(0, i0), (1, i1)] {
                        let sub = 2 * j + h;
                        let k = 8 * b + sub;
                        let sc = bytes_as_floats(blk.add(q4k_at::SCALES + LANES * sub));
                        let m = bytes_as_floats(blk.add(q4k_at::MINS + LANES * sub));
                        let da = _mm256_set1_ps(*row.scales.get_unchecked(k));
                        scaled =
                            _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(sc, da), scaled);
                        mins = _mm256_fmadd_ps(m, _mm256_set1_ps(*row.sums.get_unchecked(k)), mins);
                    }
                }
                acc = _mm256_fmadd_ps(scaled, halves(blk.add(q4k_at::D)), acc);
                acc_min = _mm256_fmadd_ps(mins, halves(blk.add(q4k_at::DMIN)), acc_min);
            }
            _mm256_sub_ps(acc, acc_min)
        }
    }

    /// Eight bytes at `p` as f32.
    #[inline(always)]
    unsafe fn bytes_as_floats(p: *const u8) -> __m256 {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe { _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i))) }
    }

    #[inline(always)]
    unsafe fn gemv_with<M: Madd>(
        format: BlockFormat,
        w: &[u8],
        blocks: usize,
        row: &SignedRow<'_>,
        g0: usize,
        out: &mut [f32],
    ) {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe {
            let group_bytes = blocks * group_block_bytes(format);
            for (i, chunk) in out.chunks_mut(LANES).enumerate() {
                let p = w.as_ptr().add((g0 + i) * group_bytes);
                let sums = match format {
                    BlockFormat::Q8_0 => group::<M>(BlockFormat::Q8_0, p, blocks, row),
                    BlockFormat::Q4_0 => group::<M>(BlockFormat::Q4_0, p, blocks, row),
                    BlockFormat::Q4K => group_q4k::<M>(p, blocks, row),
                    BlockFormat::Q5_0 => group::<M>(BlockFormat::Q5_0, p, blocks, row),
                    BlockFormat::Q5_1 => group::<M>(BlockFormat::Q5_1, p, blocks, row),
                    _ => group::<M>(BlockFormat::Q4_1, p, blocks, row),
                };
                let mut lanes = [0f32; LANES];
                _mm256_storeu_ps(lanes.as_mut_ptr(), sums);
                chunk.copy_from_slice(&lanes[..chunk.len()]);
            }
        }
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; the arguments as [`interleaved_gemv`] asserts them.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn gemv_avx2(
        format: BlockFormat,
        w: &[u8],
        blocks: usize,
        row: &SignedRow<'_>,
        g0: usize,
        out: &mut [f32],
    ) {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe { gemv_with::<Avx2>(format, w, blocks, row, g0, out) }
    }

    /// # Safety
    /// The CPU must have AVX2, FMA, F16C and AVX-512 F/VL/VNNI; the arguments as
    /// [`interleaved_gemv`] asserts them.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    pub(super) unsafe fn gemv_vnni(
        format: BlockFormat,
        w: &[u8],
        blocks: usize,
        row: &SignedRow<'_>,
        g0: usize,
        out: &mut [f32],
    ) {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe { gemv_with::<EvexDpbusd>(format, w, blocks, row, g0, out) }
    }

    /// # Safety
    /// The CPU must have AVX2, FMA, F16C and AVX-VNNI; the arguments as [`interleaved_gemv`]
    /// asserts them.
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    pub(super) unsafe fn gemv_avx_vnni(
        format: BlockFormat,
        w: &[u8],
        blocks: usize,
        row: &SignedRow<'_>,
        g0: usize,
        out: &mut [f32],
    ) {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe { gemv_with::<VexDpbusd>(format, w, blocks, row, g0, out) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::blocks::tests::random;
    use crate::kernels::blocks::BlockMatrix;
    use crate::kernels::epilogue::Epilogue;
    use crate::kernels::qgemm::tests::paths_here;

    #[test]
    fn interleaving_keeps_every_byte_of_every_channel_and_pads_the_last_group_with_zeros() {
        for format in [BlockFormat::Q8_0, BlockFormat::Q4_0, BlockFormat::Q4_1] {
            let (out_dim, in_dim) = (13, 64);
            let m = BlockMatrix::quantize(&random(out_dim * in_dim, 1), out_dim, in_dim, format)
                .unwrap();
            let w = interleave(format, m.as_bytes(), out_dim, in_dim);
            // Same bytes per group as GGML's, the last group padded to eight channels.
            assert_eq!(w.len(), 16 * 2 * format.block_bytes());
            // GGML's bytes, q8_0's values plus 128 as the interleaved copy keeps them.
            let mut sorted_in: Vec<u8> = m
                .as_bytes()
                .chunks_exact(format.block_bytes())
                .flat_map(|b| {
                    let head = b.len() - 32 / if format == BlockFormat::Q8_0 { 1 } else { 2 };
                    let plus = if format == BlockFormat::Q8_0 { 0x80 } else { 0 };
                    let values = b[head..].iter().map(move |v| v ^ plus);
                    b[..head].iter().copied().chain(values)
                })
                .collect();
            let mut sorted_out = w.clone();
            sorted_in.sort_unstable();
            sorted_out.sort_unstable();
            let pad = 3 * 2 * format.block_bytes();
            assert_eq!(&sorted_out[pad..], &sorted_in[..], "{format:?}");
            assert!(sorted_out[..pad].iter().all(|&v| v == 0), "{format:?}");
        }
    }

    #[test]
    fn interleaved_one_row_products_equal_the_one_channel_kernels_on_every_path() {
        for format in [
            BlockFormat::Q8_0,
            BlockFormat::Q4_0,
            BlockFormat::Q4_1,
            BlockFormat::Q5_0,
            BlockFormat::Q5_1,
            BlockFormat::Q4K,
        ] {
            for (out_dim, blocks) in [(1, 1), (8, 2), (45, 3), (70, 6)] {
                let in_dim = format.block_len() * blocks;
                let groups = in_dim / 32;
                let m =
                    BlockMatrix::quantize(&random(out_dim * in_dim, 2), out_dim, in_dim, format)
                        .unwrap();
                let rows = 2;
                let x = random(rows * in_dim, 3);
                let mut reference = vec![0f32; rows * out_dim];
                m.matmul_rows(
                    &x,
                    rows,
                    &mut reference,
                    Epilogue::default(),
                    Isa::portable(),
                );
                // The interleaved layout's own portable sums.
                let q = crate::kernels::qgemm::QuantizedRows::quantize(
                    &x, rows, in_dim, 32, true, false,
                );
                let w = interleave(format, m.as_bytes(), out_dim, in_dim);
                let signed: Vec<i8> = q.data.iter().map(|&v| (v ^ 0x80) as i8).collect();
                for r in 0..rows {
                    let row = SignedRow {
                        values: &signed[r * in_dim..(r + 1) * in_dim],
                        scales: &q.scales[r * groups..(r + 1) * groups],
                        sums: &q.scaled_sums[r * groups..(r + 1) * groups],
                    };
                    let mut out = vec![0f32; out_dim];
                    interleaved_gemv(format, &w, in_dim, &row, 0, &mut out, Isa::portable());
                    for (c, (o, p)) in out.iter().zip(&reference[r * out_dim..]).enumerate() {
                        assert!(
                            (o - p).abs() <= 1e-5 * (1.0 + p.abs()),
                            "{format:?} portable {out_dim}x{in_dim} channel {c}: {o} vs {p}"
                        );
                    }
                }
                for path in paths_here() {
                    if path == Isa::portable() {
                        continue;
                    }
                    let mut fast = vec![0f32; rows * out_dim];
                    m.matmul_rows(&x, rows, &mut fast, Epilogue::default(), path);
                    for (c, (f, p)) in fast.iter().zip(&reference).enumerate() {
                        assert!(
                            (f - p).abs() <= 1e-5 * (1.0 + p.abs()),
                            "{format:?} {path:?} {out_dim}x{in_dim} output {c}: {f} vs {p}"
                        );
                    }
                }
            }
        }
    }
}
