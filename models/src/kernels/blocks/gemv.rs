//! One-row products on GGML's blocks as stored, one channel at a time (the decode step of a
//! language model, bound by memory: the fewer bits, the faster): on the vector paths for `q5k` and
//! `q6k`, whose blocks have no interleaved kernel in [`super::interleaved`], and for every format
//! on the portable path. Each block is decoded in registers, 32 weights at a time,
//! and multiplied by the row's activations quantized to 8 bits per 32 inputs (GGML's `q8_0`
//! with an f32 scale), the sums exact in i32: formats with a minimum (`q4_1`, `q5_1`, `q4k`, `q5k`)
//! multiply their unsigned values directly (`vpmaddubsw`, or 256-bit `vpdpbusd` with AVX-512 VNNI
//! or AVX-VNNI) and add `minimum x sum(activations)`, as do `q4_0` and `q5_0` (their offsets of 8
//! and 16 become a minimum, folded into the vector lanes with the block's scale); the signed ones
//! (`q8_0`, `q6k`) use GGML's sign trick. Per-lane scales carry `q6k`'s groups of 16. The portable
//! path decodes each block with the scalar decoder of [`crate::kernels::blocks`].

use crate::kernels::blocks::{BlockFormat, BlockMatrix};
use crate::kernels::isa::{Isa, Path};
use crate::kernels::qgemm::QuantizedRows;

/// Sums `x W^T` of row `row` of `q` (quantized per 32 inputs, with scaled sums) for channels
/// `c0..c0 + out.len()` into `out`.
pub(crate) fn gemv(
    m: &BlockMatrix,
    q: &QuantizedRows,
    row: usize,
    c0: usize,
    out: &mut [f32],
    isa: Isa,
) {
    assert_eq!(
        q.group, 32,
        "one-row products take activations in groups of 32"
    );
    assert!(
        q.k_padded == m.in_dim() && (row + 1) * q.k_padded <= q.data.len(),
        "row shape"
    );
    assert!(q.scaled_sums.len() == q.scales.len(), "scaled sums");
    assert!(c0 + out.len() <= m.out_dim(), "channels");
    #[cfg(target_arch = "x86_64")]
    match isa.path() {
        // The 256-bit products are the same code with either encoding of `vpdpbusd`, so AVX-512
        // VNNI and its stand-in for AVX-VNNI share one.
        Path::Avx512Vnni | Path::AvxVnniEvex => {
            // SAFETY: the CPU has the features of each path (`isa` was made by detection); the
            // row, the channels and their blocks lie inside `q` and `m` (asserted above and by
            // `BlockMatrix::from_bytes`).
            return unsafe { x86::gemv_vnni(m, q, row, c0, out) };
        }
        // SAFETY: as above.
        Path::AvxVnni => return unsafe { x86::gemv_avx_vnni(m, q, row, c0, out) },
        // SAFETY: as above.
        Path::Avx2 | Path::Avx512 => return unsafe { x86::gemv_avx2(m, q, row, c0, out) },
        Path::Portable => {}
    }
    let _ = isa;
    gemv_portable(m, q, row, c0, out);
}

/// The portable one-row product: each block decoded by the scalar decoder, then summed in i32.
pub(crate) fn gemv_portable(
    m: &BlockMatrix,
    q: &QuantizedRows,
    row: usize,
    c0: usize,
    out: &mut [f32],
) {
    let format = m.format();
    let (len, bytes, group) = (format.block_len(), format.block_bytes(), format.group());
    let row_bytes = m.in_dim() / len * bytes;
    let a_row = &q.data[row * q.k_padded..(row + 1) * q.k_padded];
    let a_scales = &q.scales[row * q.groups..(row + 1) * q.groups];
    let a_sums = &q.scaled_sums[row * q.groups..(row + 1) * q.groups];
    let mut dec = crate::kernels::blocks::Decoded::default();
    for (i, o) in out.iter_mut().enumerate() {
        let c = c0 + i;
        let blocks = &m.as_bytes()[c * row_bytes..(c + 1) * row_bytes];
        let mut total = 0f32;
        for (b, block) in blocks.chunks_exact(bytes).enumerate() {
            format.decode_into(block, &mut dec);
            for g in 0..len / group {
                let k0 = b * len + g * group;
                let dot: i32 = dec.vals[g * group..(g + 1) * group]
                    .iter()
                    .zip(&a_row[k0..k0 + group])
                    .map(|(&w, &a)| w as i32 * (a as i32 - 128))
                    .sum();
                let ag = k0 / 32;
                total += dot as f32 * dec.scales[g] * a_scales[ag];
                if format.has_mins() {
                    total += dec.mins[g] * a_sums[ag];
                }
            }
        }
        *o = total;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::*;
    use crate::kernels::blocks::decode::{
        BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0,
    };
    use crate::kernels::x86::avx_vnni::{Dpbusd256, EvexDpbusd, VexDpbusd};
    use std::mem::offset_of;

    /// `sum(w * a)` of 32 unsigned weights and 32 signed activations, in 8 i32 lanes (lane `i`:
    /// inputs `4i..4i + 4`).
    pub(super) trait Dot {
        /// The lanes of the product.
        unsafe fn dot(w: __m256i, a: __m256i) -> __m256i;
    }

    /// `vpmaddubsw` + `vpmaddwd`.
    pub(super) struct Avx2Dot;
    impl Dot for Avx2Dot {
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn dot(w: __m256i, a: __m256i) -> __m256i {
            _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1))
        }
    }

    /// `vpdpbusd` on 256 bits, in either encoding (AVX-512 VNNI's EVEX, AVX-VNNI's VEX), from
    /// a zero accumulator.
    impl<D: Dpbusd256> Dot for D {
        #[inline(always)]
        unsafe fn dot(w: __m256i, a: __m256i) -> __m256i {
            // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
            // CPU features it enables were detected, and its pointers and lengths are in bounds.
            unsafe { D::dpbusd(_mm256_setzero_si256(), w, a) }
        }
    }

    /// The product of signed weights (GGML's sign trick: `|w|` times `a` with the sign of `w`).
    #[inline(always)]
    unsafe fn dot_signed<D: Dot>(w: __m256i, a: __m256i) -> __m256i {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe { D::dot(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w)) }
    }

    /// 32 activations of a `q + 128` row as signed bytes.
    #[inline(always)]
    unsafe fn activations(a: *const u8) -> __m256i {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe {
            _mm256_xor_si256(
                _mm256_loadu_si256(a as *const __m256i),
                _mm256_set1_epi8(i8::MIN),
            )
        }
    }

    /// The 32 nibbles of 16 bytes: low nibbles first, then high (GGML's `bytes_from_nibbles_32`).
    #[inline(always)]
    unsafe fn nibbles(p: *const u8) -> __m256i {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe {
            let x = _mm_loadu_si128(p as *const __m128i);
            let hi = _mm_srli_epi16(x, 4);
            _mm256_and_si256(_mm256_set_m128i(hi, x), _mm256_set1_epi8(0x0F))
        }
    }

    /// 0xFF in byte `j` where bit `j` of the 32 bits at `p` is set (GGML's `bytes_from_bits_32`).
    #[inline(always)]
    unsafe fn bits(p: *const u8) -> __m256i {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe {
            let x = (p as *const i32).read_unaligned();
            let shuffle = _mm256_set_epi64x(
                0x0303_0303_0303_0303,
                0x0202_0202_0202_0202,
                0x0101_0101_0101_0101,
                0,
            );
            let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x), shuffle);
            let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
            _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
        }
    }

    /// The f16 at `p` as f32, through F16C's `vcvtph2ps`.
    #[inline(always)]
    unsafe fn half_at(p: *const u8) -> f32 {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe {
            let bits = (p as *const u16).read_unaligned();
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
        }
    }

    /// What the blocks of one channel add to: lanes of scaled sums and the minimums' share.
    #[derive(Clone, Copy)]
    struct Acc {
        lanes: __m256,
        mins: f32,
    }

    impl Acc {
        /// Adds the i32 lanes `dot` times `scale` (per lane) times the activation scale `da`.
        #[inline(always)]
        unsafe fn add(&mut self, dot: __m256i, scale: __m256, da: f32) {
            // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
            // CPU features it enables were detected, and its pointers and lengths are in bounds.
            unsafe {
                let s = _mm256_mul_ps(scale, _mm256_set1_ps(da));
                self.lanes = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), s, self.lanes);
            }
        }

        #[inline(always)]
        unsafe fn total(&self) -> f32 {
            // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
            // CPU features it enables were detected, and its pointers and lengths are in bounds.
            unsafe {
                let x = _mm_add_ps(
                    _mm256_castps256_ps128(self.lanes),
                    _mm256_extractf128_ps(self.lanes, 1),
                );
                let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
                let x = _mm_add_ss(x, _mm_movehdup_ps(x));
                _mm_cvtss_f32(x) + self.mins
            }
        }
    }

    /// The activations of one row: bytes, and per 32 inputs the scale and the scaled sum.
    struct Row {
        a: *const u8,
        scales: *const f32,
        sums: *const f32,
    }

    /// The f16 at `p` as f32 in every lane (`vpbroadcastw` + `vcvtph2ps`).
    #[inline(always)]
    unsafe fn half_lanes(p: *const u8) -> __m256 {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe {
            let bits = (p as *const u16).read_unaligned();
            _mm256_cvtph_ps(_mm_set1_epi16(bits as i16))
        }
    }

    /// The 32-block formats: one block's weights, scale and minimum. `q4_0` and `q5_0` fold their
    /// offset (8, 16: a minimum of `-offset d`) into the lanes: `d (da dot - offset/8 s)` per
    /// lane, where `s` is the group's scaled activation sum, so no scalar work is left per block
    /// but the scale's conversion.
    #[inline(always)]
    unsafe fn block32<D: Dot>(
        format: BlockFormat,
        b: *const u8,
        row: &Row,
        k: usize,
        acc: &mut Acc,
    ) {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe {
            let a = activations(row.a.add(k * 32));
            let da = _mm256_set1_ps(*row.scales.add(k));
            match format {
                BlockFormat::Q8_0 => {
                    let w = _mm256_loadu_si256(b.add(offset_of!(BlockQ8_0, qs)) as *const __m256i);
                    let dot = _mm256_cvtepi32_ps(dot_signed::<D>(w, a));
                    acc.lanes = _mm256_fmadd_ps(dot, _mm256_mul_ps(half_lanes(b), da), acc.lanes);
                }
                BlockFormat::Q4_0 => {
                    let dot =
                        _mm256_cvtepi32_ps(D::dot(nibbles(b.add(offset_of!(BlockQ4_0, qs))), a));
                    let offset = _mm256_set1_ps(*row.sums.add(k));
                    let v = _mm256_fmsub_ps(dot, da, offset);
                    acc.lanes = _mm256_fmadd_ps(v, half_lanes(b), acc.lanes);
                }
                BlockFormat::Q5_0 => {
                    let qh = b.add(offset_of!(BlockQ5_0, qh));
                    let high = _mm256_and_si256(bits(qh), _mm256_set1_epi8(0x10));
                    let w = _mm256_or_si256(nibbles(b.add(offset_of!(BlockQ5_0, qs))), high);
                    let dot = _mm256_cvtepi32_ps(D::dot(w, a));
                    let offset = _mm256_set1_ps(2.0 * *row.sums.add(k));
                    let v = _mm256_fmsub_ps(dot, da, offset);
                    acc.lanes = _mm256_fmadd_ps(v, half_lanes(b), acc.lanes);
                }
                BlockFormat::Q4_1 => {
                    acc.mins += half_at(b.add(offset_of!(BlockQ4_1, m))) * *row.sums.add(k);
                    let qs = b.add(offset_of!(BlockQ4_1, qs));
                    let dot = _mm256_cvtepi32_ps(D::dot(nibbles(qs), a));
                    acc.lanes = _mm256_fmadd_ps(dot, _mm256_mul_ps(half_lanes(b), da), acc.lanes);
                }
                _ => {
                    // Q5_1: nibble | 16 where the fifth bit is set.
                    acc.mins += half_at(b.add(offset_of!(BlockQ5_1, m))) * *row.sums.add(k);
                    let qh = b.add(offset_of!(BlockQ5_1, qh));
                    let high = _mm256_and_si256(bits(qh), _mm256_set1_epi8(0x10));
                    let w = _mm256_or_si256(nibbles(b.add(offset_of!(BlockQ5_1, qs))), high);
                    let dot = _mm256_cvtepi32_ps(D::dot(w, a));
                    acc.lanes = _mm256_fmadd_ps(dot, _mm256_mul_ps(half_lanes(b), da), acc.lanes);
                }
            }
        }
    }

    /// A `q4k` or `q5k` block (256 weights, 8 groups of 32 with 6-bit scales and minimums).
    #[inline(always)]
    unsafe fn block_k4<D: Dot, const FIVE: bool>(
        b: *const u8,
        row: &Row,
        k0: usize,
        acc: &mut Acc,
    ) {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe {
            // `q4k` and `q5k` share the layout of their first three fields.
            let (d, dmin) = (
                half_at(b.add(offset_of!(BlockQ4K, d))),
                half_at(b.add(offset_of!(BlockQ4K, dmin))),
            );
            let scales = std::slice::from_raw_parts(b.add(offset_of!(BlockQ4K, scales)), 12);
            let qs = b.add(if FIVE {
                offset_of!(BlockQ5K, qs)
            } else {
                offset_of!(BlockQ4K, qs)
            });
            let qh = if FIVE {
                _mm256_loadu_si256(b.add(offset_of!(BlockQ5K, qh)) as *const __m256i)
            } else {
                _mm256_setzero_si256()
            };
            let low = _mm256_set1_epi8(0x0F);
            let one = _mm256_set1_epi8(1);
            for j in 0..4 {
                let x = _mm256_loadu_si256(qs.add(32 * j) as *const __m256i);
                let halves = [
                    _mm256_and_si256(x, low),
                    _mm256_and_si256(_mm256_srli_epi16(x, 4), low),
                ];
                for (h, mut w) in halves.into_iter().enumerate() {
                    let g = 2 * j + h;
                    if FIVE {
                        let bit = _mm256_and_si256(
                            _mm256_srl_epi16(qh, _mm_cvtsi32_si128(g as i32)),
                            one,
                        );
                        w = _mm256_or_si256(w, _mm256_slli_epi16(bit, 4));
                    }
                    let (sc, m) = crate::kernels::blocks::scale_min_k4(g, scales);
                    let k = k0 + g;
                    acc.mins += -(dmin * m as f32) * *row.sums.add(k);
                    let a = activations(row.a.add(k * 32));
                    acc.add(
                        D::dot(w, a),
                        _mm256_set1_ps(d * sc as f32),
                        *row.scales.add(k),
                    );
                }
            }
        }
    }

    /// Bits `shift` and `shift + 1` of each byte of `qh`, moved to bits 4 and 5.
    #[inline(always)]
    unsafe fn two_bits(qh: __m256i, shift: i32, three: __m256i) -> __m256i {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe {
            let h = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(shift)), three);
            _mm256_slli_epi16(h, 4)
        }
    }

    /// A `q6k` block (256 weights, 16 groups of 16 with 8-bit scales, 6-bit values less 32).
    #[inline(always)]
    unsafe fn block_q6k<D: Dot>(b: *const u8, row: &Row, k0: usize, acc: &mut Acc) {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe {
            let d = half_at(b.add(offset_of!(BlockQ6K, d)));
            let sc = b.add(offset_of!(BlockQ6K, scales)) as *const i8;
            let low = _mm256_set1_epi8(0x0F);
            let three = _mm256_set1_epi8(3);
            let bias = _mm256_set1_epi8(32);
            for n in 0..2 {
                let (ql, qh) = (offset_of!(BlockQ6K, ql), offset_of!(BlockQ6K, qh));
                let l0 = _mm256_loadu_si256(b.add(ql + 64 * n) as *const __m256i);
                let l1 = _mm256_loadu_si256(b.add(ql + 64 * n + 32) as *const __m256i);
                let qh = _mm256_loadu_si256(b.add(qh + 32 * n) as *const __m256i);
                let chunks = [
                    _mm256_or_si256(_mm256_and_si256(l0, low), two_bits(qh, 0, three)),
                    _mm256_or_si256(_mm256_and_si256(l1, low), two_bits(qh, 2, three)),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(l0, 4), low),
                        two_bits(qh, 4, three),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(l1, 4), low),
                        two_bits(qh, 6, three),
                    ),
                ];
                for (c, w) in chunks.into_iter().enumerate() {
                    let g = 8 * n + 2 * c;
                    let s0 = d * *sc.add(g) as f32;
                    let s1 = d * *sc.add(g + 1) as f32;
                    let scale = _mm256_set_m128(_mm_set1_ps(s1), _mm_set1_ps(s0));
                    let k = k0 + 4 * n + c;
                    let a = activations(row.a.add(k * 32));
                    let w = _mm256_sub_epi8(w, bias);
                    acc.add(dot_signed::<D>(w, a), scale, *row.scales.add(k));
                }
            }
        }
    }

    /// One format's block in the one-row product.
    trait Kernel {
        /// Groups of 32 activations one block covers.
        const GROUPS: usize;
        /// Adds the block at `b` times the activations from group `k` on.
        unsafe fn add<D: Dot>(b: *const u8, row: &Row, k: usize, acc: &mut Acc);
    }

    macro_rules! kernel {
        ($name:ident, $groups:expr, |$b:ident, $row:ident, $k:ident, $acc:ident| $body:expr) => {
            struct $name;
            impl Kernel for $name {
                const GROUPS: usize = $groups;
                #[inline(always)]
                unsafe fn add<D: Dot>($b: *const u8, $row: &Row, $k: usize, $acc: &mut Acc) {
                    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
                    // CPU features it enables were detected, and its pointers and lengths are in bounds.
                    unsafe { $body }
                }
            }
        };
    }

    kernel!(Q8_0K, 1, |b, row, k, acc| block32::<D>(
        BlockFormat::Q8_0,
        b,
        row,
        k,
        acc
    ));
    kernel!(Q4_0K, 1, |b, row, k, acc| block32::<D>(
        BlockFormat::Q4_0,
        b,
        row,
        k,
        acc
    ));
    kernel!(Q4_1K, 1, |b, row, k, acc| block32::<D>(
        BlockFormat::Q4_1,
        b,
        row,
        k,
        acc
    ));
    kernel!(Q5_0K, 1, |b, row, k, acc| block32::<D>(
        BlockFormat::Q5_0,
        b,
        row,
        k,
        acc
    ));
    kernel!(Q5_1K, 1, |b, row, k, acc| block32::<D>(
        BlockFormat::Q5_1,
        b,
        row,
        k,
        acc
    ));
    kernel!(Q4KK, 8, |b, row, k, acc| block_k4::<D, false>(
        b, row, k, acc
    ));
    kernel!(Q5KK, 8, |b, row, k, acc| block_k4::<D, true>(
        b, row, k, acc
    ));
    kernel!(Q6KK, 8, |b, row, k, acc| block_q6k::<D>(b, row, k, acc));

    /// One channel from `w`, its blocks summed alternately into two accumulators (two chains
    /// of multiply-adds in flight instead of one).
    #[inline(always)]
    unsafe fn channel<D: Dot, K: Kernel>(
        w: *const u8,
        bytes: usize,
        blocks: usize,
        r: &Row,
    ) -> f32 {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe {
            let zero = Acc {
                lanes: _mm256_setzero_ps(),
                mins: 0.0,
            };
            let (mut even, mut odd) = (zero, zero);
            let mut b = 0;
            while b + 2 <= blocks {
                K::add::<D>(w.add(b * bytes), r, b * K::GROUPS, &mut even);
                K::add::<D>(w.add((b + 1) * bytes), r, (b + 1) * K::GROUPS, &mut odd);
                b += 2;
            }
            if b < blocks {
                K::add::<D>(w.add(b * bytes), r, b * K::GROUPS, &mut even);
            }
            even.lanes = _mm256_add_ps(even.lanes, odd.lanes);
            even.mins += odd.mins;
            even.total()
        }
    }

    #[inline(always)]
    unsafe fn gemv_kernel<D: Dot, K: Kernel>(m: &BlockMatrix, r: &Row, c0: usize, out: &mut [f32]) {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe {
            let format = m.format();
            let (len, bytes) = (format.block_len(), format.block_bytes());
            let blocks = m.in_dim() / len;
            let row_bytes = blocks * bytes;
            let data = m.as_bytes().as_ptr().add(c0 * row_bytes);
            for (c, o) in out.iter_mut().enumerate() {
                *o = channel::<D, K>(data.add(c * row_bytes), bytes, blocks, r);
            }
        }
    }

    /// The one-row product for every format, with `D`'s dot product; inlined into the entry of
    /// each instruction set.
    #[inline(always)]
    unsafe fn gemv_with<D: Dot>(
        m: &BlockMatrix,
        q: &QuantizedRows,
        row: usize,
        c0: usize,
        out: &mut [f32],
    ) {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe {
            let r = Row {
                a: q.data.as_ptr().add(row * q.k_padded),
                scales: q.scales.as_ptr().add(row * q.groups),
                sums: q.scaled_sums.as_ptr().add(row * q.groups),
            };
            match m.format() {
                BlockFormat::Q8_0 => gemv_kernel::<D, Q8_0K>(m, &r, c0, out),
                BlockFormat::Q4_0 => gemv_kernel::<D, Q4_0K>(m, &r, c0, out),
                BlockFormat::Q4_1 => gemv_kernel::<D, Q4_1K>(m, &r, c0, out),
                BlockFormat::Q5_0 => gemv_kernel::<D, Q5_0K>(m, &r, c0, out),
                BlockFormat::Q5_1 => gemv_kernel::<D, Q5_1K>(m, &r, c0, out),
                BlockFormat::Q4K => gemv_kernel::<D, Q4KK>(m, &r, c0, out),
                BlockFormat::Q5K => gemv_kernel::<D, Q5KK>(m, &r, c0, out),
                BlockFormat::Q6K => gemv_kernel::<D, Q6KK>(m, &r, c0, out),
            }
        }
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; the arguments as [`gemv`] asserts them.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn gemv_avx2(
        m: &BlockMatrix,
        q: &QuantizedRows,
        row: usize,
        c0: usize,
        out: &mut [f32],
    ) {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe { gemv_with::<Avx2Dot>(m, q, row, c0, out) }
    }

    /// # Safety
    /// The CPU must have AVX2, FMA, F16C and AVX-VNNI; the arguments as [`gemv`] asserts them.
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    pub(super) unsafe fn gemv_avx_vnni(
        m: &BlockMatrix,
        q: &QuantizedRows,
        row: usize,
        c0: usize,
        out: &mut [f32],
    ) {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe { gemv_with::<VexDpbusd>(m, q, row, c0, out) }
    }

    /// # Safety
    /// The CPU must have AVX2, FMA, F16C and AVX-512 F/VL/VNNI; the arguments as [`gemv`] asserts them.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    pub(super) unsafe fn gemv_vnni(
        m: &BlockMatrix,
        q: &QuantizedRows,
        row: usize,
        c0: usize,
        out: &mut [f32],
    ) {
        // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
        // CPU features it enables were detected, and its pointers and lengths are in bounds.
        unsafe { gemv_with::<EvexDpbusd>(m, q, row, c0, out) }
    }
}
