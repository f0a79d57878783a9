//! The AVX-512 kernels: the integer tile of `int8` and the block formats on 512-bit `vpdpbusd`
//! (AVX-512 VNNI), and the element-wise kernels, written with intrinsics because the compiler
//! does not vectorise the polynomial `exp` and `erf` on its own: 16 lanes at a time, the ragged
//! tail of any width through masked loads and stores. Callers check
//! [`Isa::avx512`](crate::kernels::Isa::avx512) first. (The f32 and bf16 tile kernels, AVX-512
//! only, keep their own files beside their packing: `f32_tile`, `bf16_tile`.)

use std::arch::x86_64::*;

use crate::kernels::int_tile::{Panel, QuantizedRows, PANEL, TILE_COLS, TILE_ROWS};

/// Lanes of one vector.
const LANES: usize = 16;

/// A mask of the first `min(remaining, 16)` lanes.
#[inline(always)]
fn lanes_left(remaining: usize) -> __mmask16 {
    if remaining >= LANES {
        0xFFFF
    } else {
        ((1u32 << remaining) - 1) as __mmask16
    }
}

/// `e^x` of 16 lanes, the same method as [`exp_approx`](super::elementwise::exp_approx):
/// `2^n * p(r)`, with `2^n` applied by `vscalefps`.
#[inline]
#[target_feature(enable = "avx512f")]
fn exp16(x: __m512) -> __m512 {
    let x = _mm512_max_ps(
        _mm512_min_ps(x, _mm512_set1_ps(88.0)),
        _mm512_set1_ps(-87.0),
    );
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
    let mut p = _mm512_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, n)
}

/// GELU (erf form) of 16 lanes: `0.5 x (1 + erf(x / sqrt 2))`, erf by Abramowitz and Stegun
/// 7.1.26 as in [`erf_approx`](super::elementwise::erf_approx).
#[inline]
#[target_feature(enable = "avx512f")]
fn gelu16(x: __m512) -> __m512 {
    let z = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let a = _mm512_abs_ps(z);
    let one = _mm512_set1_ps(1.0);
    let t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.327_591_1), a, one));
    let mut poly = _mm512_set1_ps(1.061_405_4);
    for c in [-1.453_152_1, 1.421_413_8, -0.284_496_72, 0.254_829_6] {
        poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(c));
    }
    poly = _mm512_mul_ps(poly, t);
    let e = exp16(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), a), a));
    let erf_abs = _mm512_fnmadd_ps(poly, e, one);
    // erf is odd: put the sign of z back (x and z share it).
    let sign = _mm512_and_si512(_mm512_castps_si512(z), _mm512_set1_epi32(i32::MIN));
    let erf = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(erf_abs), sign));
    _mm512_mul_ps(
        _mm512_mul_ps(_mm512_set1_ps(0.5), x),
        _mm512_add_ps(one, erf),
    )
}

/// GELU in place.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn gelu_in_place(x: &mut [f32]) {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe {
        let mut chunks = x.chunks_exact_mut(LANES);
        for c in &mut chunks {
            let v = _mm512_loadu_ps(c.as_ptr());
            _mm512_storeu_ps(c.as_mut_ptr(), gelu16(v));
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let m = lanes_left(tail.len());
            let v = _mm512_maskz_loadu_ps(m, tail.as_ptr());
            _mm512_mask_storeu_ps(tail.as_mut_ptr(), m, gelu16(v));
        }
    }
}

/// Softmax of each `cols`-wide row in place after adding `mask_bias`.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn softmax_rows_in_place(scores: &mut [f32], cols: usize, mask_bias: &[f32]) {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe {
        let mask_bias = &mask_bias[..cols];
        for row in scores.chunks_exact_mut(cols) {
            let p = row.as_mut_ptr();
            let b = mask_bias.as_ptr();
            let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
            let mut i = 0;
            while i < cols {
                let m = lanes_left(cols - i);
                let v = _mm512_add_ps(
                    _mm512_maskz_loadu_ps(m, p.add(i)),
                    _mm512_maskz_loadu_ps(m, b.add(i)),
                );
                _mm512_mask_storeu_ps(p.add(i), m, v);
                max = _mm512_mask_max_ps(max, m, max, v);
                i += LANES;
            }
            let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
            let mut sum = _mm512_setzero_ps();
            let mut i = 0;
            while i < cols {
                let m = lanes_left(cols - i);
                let e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, p.add(i)), max));
                _mm512_mask_storeu_ps(p.add(i), m, e);
                sum = _mm512_mask_add_ps(sum, m, sum, e);
                i += LANES;
            }
            let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
            let mut i = 0;
            while i < cols {
                let m = lanes_left(cols - i);
                let v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p.add(i)), inv);
                _mm512_mask_storeu_ps(p.add(i), m, v);
                i += LANES;
            }
        }
    }
}

/// Quantizes `x` symmetrically to `q + 128` in `q` (same length); returns the scale (0 for an
/// all-zero span). Rounds half to even, like the portable code.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn quantize_span(x: &[f32], q: &mut [u8]) -> f32 {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe {
        let n = x.len().min(q.len());
        let mut maxv = _mm512_setzero_ps();
        let mut i = 0;
        while i < n {
            let m = lanes_left(n - i);
            maxv = _mm512_max_ps(
                maxv,
                _mm512_abs_ps(_mm512_maskz_loadu_ps(m, x.as_ptr().add(i))),
            );
            i += LANES;
        }
        let max = _mm512_reduce_max_ps(maxv);
        if max == 0.0 {
            return 0.0;
        }
        let inv = _mm512_set1_ps(127.0 / max);
        let offset = _mm512_set1_epi32(128);
        let mut i = 0;
        while i < n {
            let m = lanes_left(n - i);
            let v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x.as_ptr().add(i)), inv);
            let r = _mm512_add_epi32(
                _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v),
                offset,
            );
            _mm512_mask_cvtepi32_storeu_epi8(q.as_mut_ptr().add(i) as *mut i8, m, r);
            i += LANES;
        }
        max / 127.0
    }
}

/// `MR` rows against the panel through `vpdpbusd`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn tile_vnni<const MR: usize>(
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

/// The f32 dot products of `R` rows of activations (`x`, `k` apart) with `C` output channels of
/// an `out x in` weight (`w`, `k` apart), into `out[r][c]`: 16 inputs a step, the ragged tail
/// through masked loads, each channel's vector loaded once for all `R` rows (a decode step's
/// products, which stream the weight from memory).
///
/// # Safety
/// AVX-512 F; `x` valid for `R` rows of `k` reads, `w` for `C` rows of `k`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn dots_f32<const R: usize, const C: usize>(
    x: *const f32,
    w: *const f32,
    k: usize,
    out: &mut [[f32; C]; R],
) {
    // SAFETY: the loads lie in the `C` rows of `k` the caller vouches for (`dots` reads lanes
    // below `k` only).
    let load = |p: usize, mask: __mmask16| unsafe { _mm512_maskz_loadu_ps(mask, w.add(p)) };
    // SAFETY: the caller's promise on `x`, passed on.
    unsafe { dots(x, k, load, out) }
}

/// [`dots_f32`] for a half-precision weight (`w`: f16 if `!BF16`, else bf16 bits), each vector
/// of 16 weights widened to f32 as it is loaded (`vcvtph2ps`; bf16 shifted into the high half
/// of each lane, exact), so the weight streams at two bytes an input and the sums stay in f32.
///
/// # Safety
/// AVX-512 F, BW and VL; `x` valid for `R` rows of `k` reads, `w` for `C` rows of `k`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(crate) unsafe fn dots_half<const R: usize, const C: usize, const BF16: bool>(
    x: *const f32,
    w: *const u16,
    k: usize,
    out: &mut [[f32; C]; R],
) {
    // SAFETY: the loads lie in the `C` rows of `k` the caller vouches for (`dots` reads lanes
    // below `k` only).
    let load = |p: usize, mask: __mmask16| unsafe { widen16::<BF16>(w.add(p), mask) };
    // SAFETY: the caller's promise on `x`, passed on.
    unsafe { dots(x, k, load, out) }
}

/// The loop of [`dots_f32`] and [`dots_half`]: `load(j * k + p, mask)` gives the 16 weights of
/// channel `j` from input `p` as f32 (the masked lanes zero), 16 inputs a step, the ragged tail
/// through masks. Inlined into those AVX-512 functions, whose closures it calls.
///
/// # Safety
/// AVX-512 F in the caller; `x` valid for `R` rows of `k` reads; `load` valid for every
/// channel's lanes below `k`.
#[inline(always)]
unsafe fn dots<const R: usize, const C: usize>(
    x: *const f32,
    k: usize,
    load: impl Fn(usize, __mmask16) -> __m512,
    out: &mut [[f32; C]; R],
) {
    // SAFETY: every read of `x` lies in the rows the caller vouches for (`p + 16 <= k`, then the
    // masked tail's lanes below `k`); the intrinsics run in the caller's AVX-512 functions.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        let body = k / LANES * LANES;
        let mut p = 0;
        while p < body {
            dots_step(x, k, p, 0xFFFF, &load, &mut acc);
            p += LANES;
        }
        if p < k {
            dots_step(x, k, p, lanes_left(k - p), &load, &mut acc);
        }
        for (out, acc) in out.iter_mut().zip(&acc) {
            for (o, a) in out.iter_mut().zip(acc) {
                *o = _mm512_reduce_add_ps(*a);
            }
        }
    }
}

/// One step of [`dots`]: the `mask`ed lanes of inputs `p..p + 16` of every row and channel.
///
/// # Safety
/// As for [`dots`].
#[inline(always)]
unsafe fn dots_step<const R: usize, const C: usize>(
    x: *const f32,
    k: usize,
    p: usize,
    mask: __mmask16,
    load: &impl Fn(usize, __mmask16) -> __m512,
    acc: &mut [[__m512; C]; R],
) {
    // SAFETY: as for `dots`.
    unsafe {
        let mut wv = [_mm512_setzero_ps(); C];
        for (j, v) in wv.iter_mut().enumerate() {
            *v = load(j * k + p, mask);
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let xv = _mm512_maskz_loadu_ps(mask, x.add(r * k + p));
            for (a, wv) in acc.iter_mut().zip(&wv) {
                *a = _mm512_fmadd_ps(xv, *wv, *a);
            }
        }
    }
}

/// The `mask`ed lanes of 16 half-precision weights at `w` (f16 if `!BF16`, else bf16 bits),
/// widened to f32 (`vcvtph2ps`; bf16 shifted into the high half of each lane, exact); the
/// masked lanes zero.
///
/// # Safety
/// AVX-512 F, BW and VL in the caller; `w` valid for reads of the lanes `mask` sets.
#[inline(always)]
unsafe fn widen16<const BF16: bool>(w: *const u16, mask: __mmask16) -> __m512 {
    // SAFETY: the caller's promises.
    unsafe {
        let halves = _mm256_maskz_loadu_epi16(mask, w.cast::<i16>());
        if BF16 {
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(halves)))
        } else {
            _mm512_cvtph_ps(halves)
        }
    }
}

/// Transposes 16 output channels of an `out x in` f32 weight (`w`, channels `stride` apart, `k`
/// inputs each) into a tile panel: `dst[p * 32 + c] = w[c * stride + p]` for `c < 16` and
/// `p < k / 16 * 16`, one 16 x 16 block
/// at a time in registers (`vunpcklps`/`vunpckhps`, `vshufps`, `vshuff32x4`). Returns how many
/// inputs it wrote (the rest, fewer than 16, are the caller's).
///
/// # Safety
/// AVX-512 F; `w` valid for 16 rows of `k` reads `stride` apart, `dst` for writes of `k` rows
/// of 32.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn transpose_16_channels(
    w: *const f32,
    stride: usize,
    k: usize,
    dst: *mut f32,
) -> usize {
    // SAFETY: the loads lie in the 16 rows of `k` the caller vouches for (`transpose_loaded`
    // loads 16 inputs from `p + 16 <= k`); `dst` passed on.
    unsafe { transpose_loaded(stride, k, dst, |at| _mm512_loadu_ps(w.add(at))) }
}

/// [`transpose_16_channels`] for a half-precision weight (`w`: f16 bits if `!BF16`, else bf16,
/// `k` a channel, channels `stride` halves apart), each row of 16 halves widened to f32 as it is
/// loaded (`vcvtph2ps`; bf16 shifted into the high half of each lane): both widenings are exact,
/// so the packed panel is the f32 one the f32 tiles multiply.
///
/// # Safety
/// AVX-512 F, BW and VL; `w` valid for 16 rows of `k` reads `stride` apart, `dst` for writes of
/// `k` rows of 32.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(crate) unsafe fn transpose_16_channels_half<const BF16: bool>(
    w: *const u16,
    stride: usize,
    k: usize,
    dst: *mut f32,
) -> usize {
    // SAFETY: as in `transpose_16_channels`, for halves (all 16 lanes of each load lie in the
    // channel's `k`).
    unsafe { transpose_loaded(stride, k, dst, |at| widen16::<BF16>(w.add(at), 0xFFFF)) }
}

/// The loop of [`transpose_16_channels`] and [`transpose_16_channels_half`]: `load(c * stride +
/// p)` gives inputs `p..p + 16` of channel `c` as f32. Inlined into those AVX-512 functions,
/// whose closures it calls.
///
/// # Safety
/// AVX-512 F in the caller; `load` valid for 16 channels' inputs below `k / 16 * 16`; `dst` for
/// writes of `k` rows of 32.
#[inline(always)]
unsafe fn transpose_loaded(
    stride: usize,
    k: usize,
    dst: *mut f32,
    load: impl Fn(usize) -> __m512,
) -> usize {
    let body = k / LANES * LANES;
    // SAFETY: every read is in the 16 rows of `k` and every write in the `k` rows of 32 the
    // caller vouches for (`p + 16 <= body <= k`).
    unsafe {
        let mut p = 0;
        while p < body {
            let mut r = [_mm512_setzero_ps(); 16];
            for (c, v) in r.iter_mut().enumerate() {
                *v = load(c * stride + p);
            }
            transpose_16x16(&mut r);
            for (i, v) in r.iter().enumerate() {
                _mm512_storeu_ps(dst.add((p + i) * 32), *v);
            }
            p += LANES;
        }
    }
    body
}

/// Transposes 16 vectors of 16 lanes in registers: lane `j` of vector `i` goes to lane `i` of
/// vector `j` (`vunpcklps`/`vunpckhps`, `vshufps`, then `vshuff32x4` twice).
#[inline(always)]
fn transpose_16x16(r: &mut [__m512; 16]) {
    // SAFETY: register shuffles only; inlined into the AVX-512 F functions above, which their
    // callers run on AVX-512 paths only.
    unsafe {
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        for i in 0..4 {
            let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
            r[4 * i] = _mm512_shuffle_ps::<0x44>(a, c);
            r[4 * i + 1] = _mm512_shuffle_ps::<0xEE>(a, c);
            r[4 * i + 2] = _mm512_shuffle_ps::<0x44>(b, d);
            r[4 * i + 3] = _mm512_shuffle_ps::<0xEE>(b, d);
        }
        for half in 0..2 {
            let base = 8 * half;
            for i in 0..4 {
                t[base + i] = _mm512_shuffle_f32x4::<0x88>(r[base + i], r[base + 4 + i]);
                t[base + 4 + i] = _mm512_shuffle_f32x4::<0xDD>(r[base + i], r[base + 4 + i]);
            }
        }
        for i in 0..8 {
            r[i] = _mm512_shuffle_f32x4::<0x88>(t[i], t[8 + i]);
            r[8 + i] = _mm512_shuffle_f32x4::<0xDD>(t[i], t[8 + i]);
        }
    }
}
