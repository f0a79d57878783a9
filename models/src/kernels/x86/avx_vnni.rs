//! The integer tile of `int8` and the block formats on 256-bit `vpdpbusd`: AVX-VNNI's VEX form
//! (Intel's client CPUs since Alder Lake, AMD's since Zen 5) and AVX-512 VNNI's EVEX form on
//! 256-bit vectors (AVX-512 VL), one code through the [`Dpbusd256`] trait; the group sums and
//! stores are AVX2's.

use super::avx2::{add_group_avx2, store_avx2};
use crate::kernels::int_tile::{Panel, QuantizedRows, TILE_COLS};

/// `vpdpbusd` on 256-bit vectors: `acc + sum(u * s)` of each lane's four unsigned bytes of `u`
/// and signed bytes of `s`.
pub(crate) trait Dpbusd256 {
    /// The multiply-add.
    unsafe fn dpbusd(
        acc: std::arch::x86_64::__m256i,
        u: std::arch::x86_64::__m256i,
        s: std::arch::x86_64::__m256i,
    ) -> std::arch::x86_64::__m256i;
}

/// AVX-VNNI's VEX-encoded `vpdpbusd`.
pub(crate) struct VexDpbusd;

impl Dpbusd256 for VexDpbusd {
    #[inline]
    #[target_feature(enable = "avx2,avxvnni")]
    unsafe fn dpbusd(
        acc: std::arch::x86_64::__m256i,
        u: std::arch::x86_64::__m256i,
        s: std::arch::x86_64::__m256i,
    ) -> std::arch::x86_64::__m256i {
        std::arch::x86_64::_mm256_dpbusd_avx_epi32(acc, u, s)
    }
}

/// AVX-512 VNNI's EVEX-encoded `vpdpbusd` on 256-bit vectors (AVX-512 VL).
pub(crate) struct EvexDpbusd;

impl Dpbusd256 for EvexDpbusd {
    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    unsafe fn dpbusd(
        acc: std::arch::x86_64::__m256i,
        u: std::arch::x86_64::__m256i,
        s: std::arch::x86_64::__m256i,
    ) -> std::arch::x86_64::__m256i {
        std::arch::x86_64::_mm256_dpbusd_epi32(acc, u, s)
    }
}

/// `MR` rows against the panel through AVX-VNNI's `vpdpbusd`.
#[target_feature(enable = "avx2,fma,avxvnni")]
pub(crate) unsafe fn tile_avx_vnni<const MR: usize>(
    panel: &Panel<'_>,
    q: &QuantizedRows,
    row: usize,
    out: &mut [[f32; TILE_COLS]],
) {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe { tile_vnni256::<MR, VexDpbusd>(panel, q, row, out) }
}

/// `MR` rows against the panel through AVX-512 VNNI's `vpdpbusd` on 256-bit vectors: the
/// AVX-VNNI path's code with the other encoding of its instruction.
#[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512vnni")]
pub(crate) unsafe fn tile_vnni256_evex<const MR: usize>(
    panel: &Panel<'_>,
    q: &QuantizedRows,
    row: usize,
    out: &mut [[f32; TILE_COLS]],
) {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe { tile_vnni256::<MR, EvexDpbusd>(panel, q, row, out) }
}

/// `MR` rows against the panel through 256-bit `vpdpbusd`: the unsigned activations (`q + 128`)
/// times the signed weights, 8 channels of 4 inputs per vector, less the `128 * sum(w)` offsets,
/// in the 16 vector registers of a CPU without AVX-512.
#[inline(always)]
pub(crate) unsafe fn tile_vnni256<const MR: usize, D: Dpbusd256>(
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
        // The four 256-bit vectors of one quad: channels 0-7, 8-15 (sub-panel 0), 16-23, 24-31.
        let starts = [0, 32, panel.sub_stride, panel.sub_stride + 32];
        let mut sums = [[_mm256_setzero_ps(); 4]; MR];
        for g in 0..q.groups {
            let at = g * panel.stride;
            // Each sum starts from minus its `128 * sum(w)` offset, as in `tile_vnni`.
            let start = |v: usize| {
                let o =
                    _mm256_loadu_si256(panel.offsets.as_ptr().add(at + v * 8) as *const __m256i);
                _mm256_sub_epi32(_mm256_setzero_si256(), o)
            };
            let mut acc = [[start(0), start(1), start(2), start(3)]; MR];
            for kq in g * gq..(g + 1) * gq {
                let mut av = [_mm256_setzero_si256(); MR];
                for (r, av_r) in av.iter_mut().enumerate() {
                    let four = (a.add(r * q.k_padded + kq * 4) as *const i32).read_unaligned();
                    *av_r = _mm256_set1_epi32(four);
                }
                for (v, start) in starts.iter().enumerate() {
                    let w = _mm256_loadu_si256(base.add(start + kq * 64) as *const __m256i);
                    for (acc_r, av_r) in acc.iter_mut().zip(&av) {
                        acc_r[v] = D::dpbusd(acc_r[v], *av_r, w);
                    }
                }
            }
            add_group_avx2(panel, q, row, g, &acc, &mut sums);
        }
        store_avx2(&sums, out);
    }
}
