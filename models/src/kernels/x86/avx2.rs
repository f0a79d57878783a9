//! The AVX2 kernels: the integer tile of `int8` and the block formats through `vpmaddubsw` +
//! `vpmaddwd` (signed weights with GGML's sign trick, unsigned ones without it), the group sums
//! and stores the 256-bit VNNI tile shares, and the activations' quantization, 32 values a step.

use crate::kernels::int_tile::{Panel, QuantizedRows, TILE_COLS};
use crate::kernels::portable::quantized;

/// `MR` rows against the panel through `vpmaddubsw` + `vpmaddwd`: `|w|` times the activation
/// with the sign of `w` (GGML's trick: both at most 127 in magnitude, so no pair sum of
/// `vpmaddubsw` saturates), 8 channels of 4 inputs per 256-bit vector.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn tile_avx2<const MR: usize>(
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
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn tile_avx2_unsigned<const MR: usize>(
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
#[inline(always)]
pub(crate) unsafe fn add_group_avx2<const MR: usize>(
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
#[inline(always)]
pub(crate) unsafe fn store_avx2<const MR: usize>(
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

/// [`quantize_span`] on 256-bit vectors, 32 inputs a step, the rest through [`quantized`] as the
/// portable code does; `vcvtps2dq` rounds half to even, as `round_ties_even` does, so the bytes
/// are the same.
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

/// [`dots_f32`] for a half-precision weight (`w`: f16 if `!BF16`, else bf16 bits), each vector
/// of 8 weights widened to f32 as it is loaded (F16C's `vcvtph2ps`; bf16 shifted into the high
/// half of each lane, exact), the ragged tail one at a time. At most two rows of four channels.
///
/// # Safety
/// AVX2, FMA and F16C; `x` valid for `R` rows of `k` reads, `w` for `C` rows of `k`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dots_half<const R: usize, const C: usize, const BF16: bool>(
    x: *const f32,
    w: *const u16,
    k: usize,
    out: &mut [[f32; C]; R],
) {
    // SAFETY: the loads lie in the `C` rows of `k` the caller vouches for (`dots` reads whole
    // vectors below `k` and single values in the tail).
    let load = |p: usize| unsafe { widen8::<BF16>(w.add(p)) };
    // SAFETY: as above.
    let one = |p: usize| widen_one::<BF16>(unsafe { *w.add(p) });
    // SAFETY: the caller's promise on `x`, passed on.
    unsafe { dots(x, k, load, one, out) }
}

/// 8 half-precision weights at `w` (f16 if `!BF16`, else bf16 bits) widened to f32 (F16C's
/// `vcvtph2ps`; bf16 shifted into the high half of each lane, exact).
///
/// # Safety
/// AVX2 and F16C in the caller; `w` valid for 8 reads.
#[inline(always)]
unsafe fn widen8<const BF16: bool>(w: *const u16) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // SAFETY: the caller's promises.
    unsafe {
        let halves = _mm_loadu_si128(w.cast::<__m128i>());
        if BF16 {
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(halves)))
        } else {
            _mm256_cvtph_ps(halves)
        }
    }
}

/// One half-precision weight's bits (f16 if `!BF16`, else bf16) as f32.
#[inline]
fn widen_one<const BF16: bool>(bits: u16) -> f32 {
    if BF16 {
        half::bf16::from_bits(bits).to_f32()
    } else {
        half::f16::from_bits(bits).to_f32()
    }
}

/// The f32 dot products of `R` rows of activations (`x`, `k` apart) with `C` output channels of
/// an `out x in` weight (`w`, `k` apart), into `out[r][c]`: 8 inputs a step on FMA, the ragged
/// tail one at a time. `R * C` accumulators and `C` weight vectors must fit AVX2's 16 registers:
/// callers pass at most two rows of four channels.
///
/// # Safety
/// AVX2 and FMA; `x` valid for `R` rows of `k` reads, `w` for `C` rows of `k`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dots_f32<const R: usize, const C: usize>(
    x: *const f32,
    w: *const f32,
    k: usize,
    out: &mut [[f32; C]; R],
) {
    // SAFETY: the loads lie in the `C` rows of `k` the caller vouches for (`dots` reads whole
    // vectors below `k` and single values in the tail).
    let load = |p: usize| unsafe { std::arch::x86_64::_mm256_loadu_ps(w.add(p)) };
    // SAFETY: as above.
    let one = |p: usize| unsafe { *w.add(p) };
    // SAFETY: the caller's promise on `x`, passed on.
    unsafe { dots(x, k, load, one, out) }
}

/// The f32 dot product of one row of activations (`x`) with one output channel of an `out x in`
/// weight (`w`), `k` inputs each, read in order: 32 inputs (128 bytes) a step into four
/// accumulators, then 8, then the ragged tail one at a time. One channel at a time makes a
/// thread's reads of the weight one sequential stream, which the hardware prefetchers follow
/// at the read ceiling: four channels read side by side (four streams, [`dots_f32`]) fell
/// 15-40% short of it on a Zen 4 VM. The AVX-512 path runs this kernel too: 512-bit steps of 64
/// inputs streamed 10-20% slower there (Zen 4 splits each 512-bit load in two), as did
/// half-precision weights in 512-bit steps (see [`dot_half`]).
///
/// # Safety
/// AVX2 and FMA; `x` and `w` valid for `k` reads.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_f32(x: *const f32, w: *const f32, k: usize) -> f32 {
    // SAFETY: the loads lie in the `k` values the caller vouches for (`dot` reads whole vectors
    // below `k` and single values in the tail).
    let load = |p: usize| unsafe { std::arch::x86_64::_mm256_loadu_ps(w.add(p)) };
    // SAFETY: as above.
    let one = |p: usize| unsafe { *w.add(p) };
    // SAFETY: the caller's promise on `x`, passed on.
    unsafe { dot(x, k, load, one) }
}

/// [`dot_f32`] for a half-precision weight (`w`: f16 if `!BF16`, else bf16 bits), each vector
/// widened as [`dots_half`] widens it: 32 halves (64 bytes) a step. The AVX-512 path runs it
/// too: 512-bit steps of 64 halves decoded SmolLM2 bf16 at 84 tokens/s where this did 101-105
/// on a Zen 4 VM (four pairs each for f16 and bf16).
///
/// # Safety
/// AVX2, FMA and F16C; `x` and `w` valid for `k` reads.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_half<const BF16: bool>(x: *const f32, w: *const u16, k: usize) -> f32 {
    // SAFETY: the loads lie in the `k` values the caller vouches for (`dot` reads whole vectors
    // below `k` and single values in the tail).
    let load = |p: usize| unsafe { widen8::<BF16>(w.add(p)) };
    // SAFETY: as above.
    let one = |p: usize| widen_one::<BF16>(unsafe { *w.add(p) });
    // SAFETY: the caller's promise on `x`, passed on.
    unsafe { dot(x, k, load, one) }
}

/// The sum of the 8 lanes of `v` (halves, then quarters, then the last pair).
///
/// # Safety
/// AVX in the caller.
#[inline(always)]
unsafe fn sum8(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    // SAFETY: the caller's promise.
    unsafe {
        let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
        _mm_cvtss_f32(_mm_add_ss(quarter, _mm_shuffle_ps::<1>(quarter, quarter)))
    }
}

/// The loop of [`dot_f32`] and [`dot_half`]: `load(p)` gives the 8 weights from input `p` as f32,
/// `one(q)` one weight of the ragged tail. Inlined into those AVX2 functions.
///
/// # Safety
/// AVX2 and FMA in the caller; `x` valid for `k` reads; `load` and `one` valid below `k`.
#[inline(always)]
unsafe fn dot(
    x: *const f32,
    k: usize,
    load: impl Fn(usize) -> std::arch::x86_64::__m256,
    one: impl Fn(usize) -> f32,
) -> f32 {
    use std::arch::x86_64::*;
    const LANES: usize = 8;
    const STEP: usize = 4 * LANES;
    // SAFETY: every read of `x` lies below `k` (`p + 32 <= k`, then `p + 8 <= k`, then `p < k`);
    // the intrinsics run in the caller's AVX2 functions.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut p = 0;
        while p + STEP <= k {
            for (i, a) in acc.iter_mut().enumerate() {
                let q = p + i * LANES;
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(q)), load(q), *a);
            }
            p += STEP;
        }
        while p + LANES <= k {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(p)), load(p), acc[0]);
            p += LANES;
        }
        let all = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut sum = sum8(all);
        while p < k {
            sum += *x.add(p) * one(p);
            p += 1;
        }
        sum
    }
}

/// The loop of [`dots_f32`] and [`dots_half`]: `load(j * k + p)` gives 8 weights of channel `j`
/// from input `p` as f32, `one(j * k + q)` one weight of the ragged tail. Inlined into those AVX2
/// functions, whose closures it calls.
///
/// # Safety
/// AVX2 and FMA in the caller; `x` valid for `R` rows of `k` reads; `load` and `one` valid for
/// every channel's inputs below `k`.
#[inline(always)]
unsafe fn dots<const R: usize, const C: usize>(
    x: *const f32,
    k: usize,
    load: impl Fn(usize) -> std::arch::x86_64::__m256,
    one: impl Fn(usize) -> f32,
    out: &mut [[f32; C]; R],
) {
    use std::arch::x86_64::*;
    const LANES: usize = 8;
    // SAFETY: every read of `x` lies in the rows the caller vouches for (`p + 8 <= k`, then
    // `p < k`); the intrinsics run in the caller's AVX2 functions.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let body = k / LANES * LANES;
        let mut p = 0;
        while p < body {
            let mut wv = [_mm256_setzero_ps(); C];
            for (j, v) in wv.iter_mut().enumerate() {
                *v = load(j * k + p);
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = _mm256_loadu_ps(x.add(r * k + p));
                for (a, wv) in acc.iter_mut().zip(&wv) {
                    *a = _mm256_fmadd_ps(xv, *wv, *a);
                }
            }
            p += LANES;
        }
        for (r, (out, acc)) in out.iter_mut().zip(&acc).enumerate() {
            for (j, (o, a)) in out.iter_mut().zip(acc).enumerate() {
                let mut sum = sum8(*a);
                for q in body..k {
                    sum += *x.add(r * k + q) * one(j * k + q);
                }
                *o = sum;
            }
        }
    }
}

/// Transposes 8 output channels of an `out x in` half-precision weight (`w`: f16 bits if
/// `!BF16`, else bf16; channels `stride` halves apart, `k` inputs each) into a panel of the f32
/// tiles, widening each 8 halves to f32 as they are loaded (F16C's `vcvtph2ps`; bf16 shifted
/// into the high half of each lane; both exact): `dst[p * 32 + c] = w[c * stride + p]` for
/// `c < 8` and `p < k / 8 * 8`, one 8 x 8 block at a time in registers (`vunpcklps`/`vunpckhps`,
/// `vshufps`, `vperm2f128`). Returns how many inputs it wrote (the rest, fewer than 8, are the
/// caller's): AVX2's half of the packing that
/// [`transpose_16_channels_half`](super::avx512::transpose_16_channels_half) does on AVX-512.
///
/// # Safety
/// AVX2 and F16C; `w` valid for 8 rows of `k` reads `stride` apart, `dst` for writes of `k` rows
/// of 32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn transpose_8_channels_half<const BF16: bool>(
    w: *const u16,
    stride: usize,
    k: usize,
    dst: *mut f32,
) -> usize {
    use std::arch::x86_64::*;
    let body = k / 8 * 8;
    // SAFETY: every read is in the 8 rows of `k` and every write in the `k` rows of 32 the caller
    // vouches for (`p + 8 <= body <= k`); the shuffles touch registers only.
    unsafe {
        let mut p = 0;
        while p < body {
            let mut r = [_mm256_setzero_ps(); 8];
            for (c, v) in r.iter_mut().enumerate() {
                *v = widen8::<BF16>(w.add(c * stride + p));
            }
            // Lane j of vector i to lane i of vector j: pairs, then quads, then 128-bit halves.
            let mut t = [_mm256_setzero_ps(); 8];
            for i in 0..4 {
                t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
            }
            for i in 0..2 {
                let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
                r[4 * i] = _mm256_shuffle_ps::<0x44>(a, c);
                r[4 * i + 1] = _mm256_shuffle_ps::<0xEE>(a, c);
                r[4 * i + 2] = _mm256_shuffle_ps::<0x44>(b, d);
                r[4 * i + 3] = _mm256_shuffle_ps::<0xEE>(b, d);
            }
            for i in 0..4 {
                let low = _mm256_permute2f128_ps::<0x20>(r[i], r[4 + i]);
                let high = _mm256_permute2f128_ps::<0x31>(r[i], r[4 + i]);
                _mm256_storeu_ps(dst.add((p + i) * 32), low);
                _mm256_storeu_ps(dst.add((p + 4 + i) * 32), high);
            }
            p += 8;
        }
    }
    body
}

/// The f32 sums of `MR <= 8` rows of activations (`a`, `k` inputs each, `lda` apart) against a
/// packed panel of the f32 tiles (`b`: `k` rows of 32 channels), times `scale`, into `out`'s first
/// `MR` rows: four rows by 16 channels at a time (8 accumulators, two weight vectors and a
/// broadcast in AVX2's 16 registers), over blocks of [`F32_TILE_INPUTS`] inputs, so the
/// four passes over each block of the panel (two halves by two groups of rows) read it from L1.
///
/// # Safety
/// AVX2 and FMA; `a` valid for `MR` rows of `k` reads `lda` apart, `b` for `k * 32` reads.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn f32_tile<const MR: usize>(
    a: *const f32,
    lda: usize,
    k: usize,
    b: *const f32,
    scale: f32,
    out: &mut [[f32; 32]],
) {
    assert!(MR <= out.len());
    let blocks = k.div_ceil(F32_TILE_INPUTS).max(1);
    for block in 0..blocks {
        let p0 = block * F32_TILE_INPUTS;
        let inputs = F32_TILE_INPUTS.min(k - p0);
        for half in 0..2 {
            let mut row = 0;
            while row < MR {
                let rows = (MR - row).min(4);
                // SAFETY: rows `row..row + rows` and inputs `p0..p0 + inputs` lie in the `MR`
                // rows of `k` the caller vouches for, and the panel's rows `p0..p0 + inputs`.
                unsafe {
                    let (a, b) = (a.add(row * lda + p0), b.add(p0 * 32 + 16 * half));
                    let (out, first) = (&mut out[row..], block == 0);
                    match rows {
                        4 => f32_quarter_tile::<4>(a, lda, inputs, b, first, out, half),
                        3 => f32_quarter_tile::<3>(a, lda, inputs, b, first, out, half),
                        2 => f32_quarter_tile::<2>(a, lda, inputs, b, first, out, half),
                        _ => f32_quarter_tile::<1>(a, lda, inputs, b, first, out, half),
                    }
                }
                row += rows;
            }
        }
    }
    if scale != 1.0 {
        for sum in out[..MR].iter_mut().flatten() {
            *sum *= scale;
        }
    }
}

/// Inputs of one block of [`f32_tile`]: 128 rows of the panel are 16 KB, which stay in a 32 KB L1
/// data cache beside the tile's activations while four passes read them.
pub(crate) const F32_TILE_INPUTS: usize = 128;

/// [`f32_tile`]'s `R <= 4` rows against half `half` (16 channels) of `inputs` rows of the panel
/// (`b`, at that half's first channel, rows 32 apart): the sums start at zero if `first`, else
/// from `out`'s, and are stored back to `out[..R][16 * half..]`.
///
/// # Safety
/// As for [`f32_tile`], with `R` rows and `inputs` inputs.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn f32_quarter_tile<const R: usize>(
    a: *const f32,
    lda: usize,
    inputs: usize,
    b: *const f32,
    first: bool,
    out: &mut [[f32; 32]],
    half: usize,
) {
    use std::arch::x86_64::*;
    assert!(R <= out.len() && half < 2);
    // SAFETY: every read lies in the rows and the panel the caller vouches for, every write in
    // `out`'s first `R` rows (asserted above).
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        if !first {
            for (i, acc) in acc.iter_mut().enumerate() {
                let sums = out[i].as_ptr().add(16 * half);
                *acc = [_mm256_loadu_ps(sums), _mm256_loadu_ps(sums.add(8))];
            }
        }
        for p in 0..inputs {
            let row = b.add(p * 32);
            let (b0, b1) = (_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8)));
            for (i, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*a.add(i * lda + p));
                acc[0] = _mm256_fmadd_ps(x, b0, acc[0]);
                acc[1] = _mm256_fmadd_ps(x, b1, acc[1]);
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            let sums = out[i].as_mut_ptr().add(16 * half);
            _mm256_storeu_ps(sums, acc[0]);
            _mm256_storeu_ps(sums.add(8), acc[1]);
        }
    }
}

/// The dot products of `RM <= 4` channels of an `out x in` f32 weight (`w`, `ldw` apart) with
/// `RN <= 3` rows of activations (`x`, `ldx` apart) over `k` inputs, into (or, if `accumulate`,
/// onto) `out[j][col + i]` for row `j` and channel `i`: 8 inputs a step in `RM x RN`
/// accumulators, summed across their lanes at the end, so neither operand is packed
/// (llamafile's tinyBLAS scheme; [`crate::kernels::f32_dots`]). A ragged tail of `k % 8` inputs
/// is read through masked loads, which touch nothing past `k`.
///
/// # Safety
/// AVX2 and FMA; `w` valid for `RM` rows of `k` reads `ldw` apart, `x` for `RN` rows of `k`
/// reads `ldx` apart.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn f32_dot_tile<const RM: usize, const RN: usize>(
    (w, ldw): (*const f32, usize),
    (x, ldx): (*const f32, usize),
    k: usize,
    accumulate: bool,
    out: &mut [[f32; 32]],
    col: usize,
) {
    use std::arch::x86_64::*;
    assert!(RN <= out.len() && col + RM <= 32);
    // SAFETY: every read lies in the rows the caller vouches for (the tail's masked lanes read
    // nothing), every write in `out`'s first `RN` rows (asserted above).
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); RM]; RN];
        let whole = k / 8 * 8;
        let mut p = 0;
        while p < whole {
            dot_tile_step(
                (w.add(p), ldw),
                (x.add(p), ldx),
                |at| _mm256_loadu_ps(at),
                &mut acc,
            );
            p += 8;
        }
        if whole < k {
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((k - whole) as i32), lanes);
            let load = |at| _mm256_maskload_ps(at, mask);
            dot_tile_step((w.add(whole), ldw), (x.add(whole), ldx), load, &mut acc);
        }
        // Each row's four channel sums in one vector: two rounds of pairwise sums within the
        // 128-bit halves, then the halves added.
        for (acc, out) in acc.iter().zip(out.iter_mut()) {
            let lane = |i: usize| if i < RM { acc[i] } else { _mm256_setzero_ps() };
            let pairs = [
                _mm256_hadd_ps(lane(0), lane(1)),
                _mm256_hadd_ps(lane(2), lane(3)),
            ];
            let quads = _mm256_hadd_ps(pairs[0], pairs[1]);
            let sums = _mm_add_ps(
                _mm256_castps256_ps128(quads),
                _mm256_extractf128_ps::<1>(quads),
            );
            let mut four = [0f32; 4];
            _mm_storeu_ps(four.as_mut_ptr(), sums);
            for (dst, sum) in out[col..col + RM].iter_mut().zip(four) {
                *dst = if accumulate { *dst + sum } else { sum };
            }
        }
    }
}

/// One step of [`f32_dot_tile`]: `load` reads 8 inputs of each of the `RN` rows (`x`, `ldx`
/// apart) and the `RM` channels (`w`, `ldw` apart), and each pair's product is added to its
/// accumulator. Inlined into that AVX2 function, whose closures it calls.
///
/// # Safety
/// AVX2 and FMA in the caller; `load` valid at each row's and channel's pointer.
#[inline(always)]
unsafe fn dot_tile_step<const RM: usize, const RN: usize>(
    (w, ldw): (*const f32, usize),
    (x, ldx): (*const f32, usize),
    load: impl Fn(*const f32) -> std::arch::x86_64::__m256,
    acc: &mut [[std::arch::x86_64::__m256; RM]; RN],
) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's promise; the intrinsics run in the caller's AVX2 function.
    unsafe {
        let mut rows = [_mm256_setzero_ps(); RN];
        for (j, row) in rows.iter_mut().enumerate() {
            *row = load(x.add(j * ldx));
        }
        for i in 0..RM {
            let channel = load(w.add(i * ldw));
            for (acc, row) in acc.iter_mut().zip(&rows) {
                acc[i] = _mm256_fmadd_ps(channel, *row, acc[i]);
            }
        }
    }
}
