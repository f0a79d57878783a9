//! The portable kernels, without intrinsics, in an order the compiler vectorises: the integer
//! tile of `int8` and the block formats, and the activations' quantization (the one rule of a
//! value's rounding, which the vector paths' ragged tails call too). They run where the CPU has
//! none of the x86 paths, under `SLIMBENCH_KERNELS=portable`, and are every path's reference in
//! the tests.

use crate::kernels::int_tile::{Panel, QuantizedRows, PANEL, TILE_COLS, TILE_ROWS};

/// The sums one multiply-add at a time, in an order the compiler vectorises (64 bytes of a
/// sub-panel against 4 inputs).
pub(crate) fn tile_portable(
    panel: &Panel<'_>,
    q: &QuantizedRows,
    row: usize,
    mr: usize,
    out: &mut [[f32; TILE_COLS]; TILE_ROWS],
) {
    let gq = q.group / 4;
    for (r, out_row) in out.iter_mut().enumerate().take(mr) {
        let a_row = &q.data[(row + r) * q.k_padded..(row + r + 1) * q.k_padded];
        let mut sums = [0f32; TILE_COLS];
        for g in 0..q.groups {
            let mut acc = [0i32; TILE_COLS];
            for kq in g * gq..(g + 1) * gq {
                let a: [i32; 4] = std::array::from_fn(|j| a_row[kq * 4 + j] as i32 - 128);
                for (sub, acc_sub) in acc.chunks_exact_mut(PANEL).enumerate() {
                    let at = sub * panel.sub_stride + kq * 64;
                    let w = &panel.data[at..at + 64];
                    for (c, acc_c) in acc_sub.iter_mut().enumerate() {
                        let w4 = &w[c * 4..c * 4 + 4];
                        *acc_c += a[0] * w4[0] as i32
                            + a[1] * w4[1] as i32
                            + a[2] * w4[2] as i32
                            + a[3] * w4[3] as i32;
                    }
                }
            }
            let sa = q.scales[(row + r) * q.groups + g];
            let at = g * panel.stride;
            for (c, s) in sums.iter_mut().enumerate() {
                *s += acc[c] as f32 * panel.scales[at + c] * sa;
                if let Some(mins) = panel.mins {
                    *s += mins[at + c] * q.scaled_sums[(row + r) * q.groups + g];
                }
            }
        }
        *out_row = sums;
    }
}

/// [`quantize_span`] without intrinsics.
pub(crate) fn quantize_span_portable(x: &[f32], q: &mut [u8]) -> f32 {
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max == 0.0 {
        return 0.0;
    }
    let inv = 127.0 / max;
    for (d, v) in q.iter_mut().zip(x) {
        *d = quantized(*v, inv);
    }
    max / 127.0
}

/// One value times `inv`, rounded half to even, as `q + 128`.
#[inline(always)]
pub(crate) fn quantized(v: f32, inv: f32) -> u8 {
    ((v * inv).round_ties_even().clamp(-127.0, 127.0) as i32 + 128) as u8
}

/// The f32 dot products of `R` rows of activations (`x`, `k` apart) with `C` output channels of
/// an `out x in` weight of any element `T` (`w`, `k` apart; f32, or f16 and bf16 widened to f32
/// by `widen` as each is read), into `out[r][c]`, eight partial sums a product in an order the
/// compiler vectorises.
pub(crate) fn dots_widened_portable<T: Copy, const R: usize, const C: usize>(
    x: &[f32],
    w: &[T],
    k: usize,
    widen: impl Fn(T) -> f32,
    out: &mut [[f32; C]; R],
) {
    const LANES: usize = 8;
    for (r, out) in out.iter_mut().enumerate() {
        let x = &x[r * k..(r + 1) * k];
        for (j, o) in out.iter_mut().enumerate() {
            let w = &w[j * k..(j + 1) * k];
            let mut acc = [0f32; LANES];
            let (xs, ws) = (x.chunks_exact(LANES), w.chunks_exact(LANES));
            let tail: f32 = xs
                .remainder()
                .iter()
                .zip(ws.remainder())
                .map(|(a, b)| a * widen(*b))
                .sum();
            for (xc, wc) in xs.zip(ws) {
                for ((a, xv), wv) in acc.iter_mut().zip(xc).zip(wc) {
                    *a += xv * widen(*wv);
                }
            }
            *o = acc.iter().sum::<f32>() + tail;
        }
    }
}

/// [`dots_widened_portable`] for an f32 weight.
pub(crate) fn dots_f32_portable<const R: usize, const C: usize>(
    x: &[f32],
    w: &[f32],
    k: usize,
    out: &mut [[f32; C]; R],
) {
    dots_widened_portable(x, w, k, |v| v, out)
}
