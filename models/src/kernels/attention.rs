//! Scaled dot-product attention of one head of one sequence, reading queries, keys and values in
//! place from a fused QKV buffer. With AVX-512: the keys are transposed once into a small scratch
//! so each query row's scores are 16-wide FMAs, softmax runs on the row in registers' reach, and
//! the context sums four query rows at a time against each value row. Elsewhere: the `gemm`
//! crate and the vectorised softmax.

use crate::kernels::elementwise::softmax_rows_in_place;
use crate::kernels::sgemm::{matmul_into, matmul_into_ptr, MatRef, Threads};
use crate::kernels::CpuFeatures;

/// One head of one sequence inside a fused QKV buffer: `tokens` rows `row_stride` apart; the
/// query, key and value of a token are `head_dim` wide at `q`, `k` and `v` within its row.
#[derive(Debug, Clone, Copy)]
pub struct HeadView<'a> {
    /// The buffer, from the head's first row.
    pub data: &'a [f32],
    /// Tokens of the sequence.
    pub tokens: usize,
    /// Width of the head.
    pub head_dim: usize,
    /// Elements between consecutive tokens' rows.
    pub row_stride: usize,
    /// Offsets of the query, key and value within a row.
    pub q: usize,
    /// See `q`.
    pub k: usize,
    /// See `q`.
    pub v: usize,
}

impl HeadView<'_> {
    fn part(&self, offset: usize) -> MatRef<'_> {
        MatRef {
            data: &self.data[offset..],
            rows: self.tokens,
            cols: self.head_dim,
            row_stride: self.row_stride,
            col_stride: 1,
        }
    }

    fn check(&self) {
        let last_row = (self.tokens.max(1) - 1) * self.row_stride;
        for off in [self.q, self.k, self.v] {
            assert!(
                self.data.len() >= last_row + off + self.head_dim,
                "head view out of bounds"
            );
        }
    }
}

/// Reusable buffers of one thread.
#[derive(Debug, Default)]
pub struct Scratch {
    scores: Vec<f32>,
    keys_t: Vec<f32>,
}

/// `softmax(q k^T * scale + mask_bias) v` for one head, into `out` (`tokens` rows of
/// `head_dim`, `out_stride` apart).
///
/// # Safety
/// `out` must be valid for writes of those rows, and no other thread may touch them meanwhile.
pub unsafe fn attend_head(
    head: HeadView<'_>,
    scale: f32,
    mask_bias: &[f32],
    scratch: &mut Scratch,
    out: *mut f32,
    out_stride: usize,
) {
    head.check();
    assert!(mask_bias.len() >= head.tokens, "one mask value per token");
    #[cfg(target_arch = "x86_64")]
    if CpuFeatures::get().avx512 {
        // SAFETY: AVX-512 F is present; the view was checked; `out` is the caller's promise.
        unsafe { avx512::attend(head, scale, mask_bias, scratch, out, out_stride) };
        return;
    }
    let t = head.tokens;
    scratch.scores.resize(t * t, 0.0);
    matmul_into(
        &mut scratch.scores,
        t,
        head.part(head.q),
        head.part(head.k).t(),
        scale,
        false,
        Threads::One,
    );
    softmax_rows_in_place(&mut scratch.scores, t, &mask_bias[..t]);
    // SAFETY: the caller's promise.
    unsafe {
        matmul_into_ptr(
            out,
            out_stride,
            MatRef::new(&scratch.scores, t, t),
            head.part(head.v),
            1.0,
            false,
            Threads::One,
        );
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{HeadView, Scratch};

    const LANES: usize = 16;

    #[inline(always)]
    fn lanes_left(remaining: usize) -> __mmask16 {
        if remaining >= LANES {
            0xFFFF
        } else {
            ((1u32 << remaining) - 1) as __mmask16
        }
    }

    /// Scores of query row `q` against `vectors` 16-key blocks starting at block `first`:
    /// `NB` accumulators stay in registers over the head width.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn score_blocks<const NB: usize>(
        q: *const f32,
        keys_t: *const f32,
        padded: usize,
        head_dim: usize,
        first: usize,
        scale: __m512,
        row: *mut f32,
    ) {
        let mut acc = [_mm512_setzero_ps(); NB];
        for dd in 0..head_dim {
            let qv = _mm512_set1_ps(*q.add(dd));
            let kt = keys_t.add(dd * padded + first * LANES);
            for (c, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(qv, _mm512_loadu_ps(kt.add(c * LANES)), *a);
            }
        }
        for (c, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(row.add((first + c) * LANES), _mm512_mul_ps(*a, scale));
        }
    }

    /// Context rows `i..i + R` (`R` query rows share each value row's loads) for the head-width
    /// chunk at `col` of `width` lanes (at most 16).
    #[inline]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn context_rows<const R: usize>(
        probs: *const f32,
        padded: usize,
        v: *const f32,
        row_stride: usize,
        tokens: usize,
        col: usize,
        mask: __mmask16,
        out: *mut f32,
        out_stride: usize,
    ) {
        let mut acc = [_mm512_setzero_ps(); R];
        for j in 0..tokens {
            let vj = _mm512_maskz_loadu_ps(mask, v.add(j * row_stride + col));
            for (r, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(_mm512_set1_ps(*probs.add(r * padded + j)), vj, *a);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            _mm512_mask_storeu_ps(out.add(r * out_stride + col), mask, *a);
        }
    }

    /// See [`super::attend_head`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn attend(
        head: HeadView<'_>,
        scale: f32,
        mask_bias: &[f32],
        scratch: &mut Scratch,
        out: *mut f32,
        out_stride: usize,
    ) {
        let (t, d, stride) = (head.tokens, head.head_dim, head.row_stride);
        let padded = t.div_ceil(LANES) * LANES;
        let vectors = padded / LANES;
        // Keys transposed: head_dim rows of `padded` (zeros past the last token).
        scratch.keys_t.clear();
        scratch.keys_t.resize(d * padded, 0.0);
        let base = head.data.as_ptr();
        for j in 0..t {
            let key = base.add(j * stride + head.k);
            for dd in 0..d {
                *scratch.keys_t.get_unchecked_mut(dd * padded + j) = *key.add(dd);
            }
        }
        scratch.scores.resize(t * padded, 0.0);
        let scores = scratch.scores.as_mut_ptr();
        let keys_t = scratch.keys_t.as_ptr();
        let scale_v = _mm512_set1_ps(scale);
        for i in 0..t {
            let q = base.add(i * stride + head.q);
            let row = scores.add(i * padded);
            let mut first = 0;
            while first + 8 <= vectors {
                score_blocks::<8>(q, keys_t, padded, d, first, scale_v, row);
                first += 8;
            }
            while first < vectors {
                score_blocks::<1>(q, keys_t, padded, d, first, scale_v, row);
                first += 1;
            }
            // Softmax over the real tokens only.
            let row = std::slice::from_raw_parts_mut(row, t);
            crate::kernels::avx512::softmax_rows_in_place(row, t, &mask_bias[..t]);
        }
        let v = base.add(head.v);
        let mut col = 0;
        while col < d {
            let mask = lanes_left(d - col);
            let mut i = 0;
            while i + 4 <= t {
                let p = scores.add(i * padded);
                context_rows::<4>(
                    p,
                    padded,
                    v,
                    stride,
                    t,
                    col,
                    mask,
                    out.add(i * out_stride),
                    out_stride,
                );
                i += 4;
            }
            while i < t {
                let p = scores.add(i * padded);
                context_rows::<1>(
                    p,
                    padded,
                    v,
                    stride,
                    t,
                    col,
                    mask,
                    out.add(i * out_stride),
                    out_stride,
                );
                i += 1;
            }
            col += LANES;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The straightforward attention in f64.
    fn naive(head: &HeadView<'_>, scale: f32, mask: &[f32]) -> Vec<f64> {
        let (t, d, s) = (head.tokens, head.head_dim, head.row_stride);
        let at = |row: usize, off: usize, c: usize| head.data[row * s + off + c] as f64;
        let mut out = vec![0f64; t * d];
        for i in 0..t {
            let scores: Vec<f64> = (0..t)
                .map(|j| {
                    (0..d)
                        .map(|c| at(i, head.q, c) * at(j, head.k, c))
                        .sum::<f64>()
                        * scale as f64
                        + mask[j] as f64
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::MIN, f64::max);
            let total: f64 = scores.iter().map(|x| (x - max).exp()).sum();
            for c in 0..d {
                out[i * d + c] = (0..t)
                    .map(|j| (scores[j] - max).exp() / total * at(j, head.v, c))
                    .sum();
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn one_head_matches_the_straightforward_attention(
            tokens in 1usize..40, head_dim in 1usize..40, padded in 0usize..5, seed in 0u64..500,
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let stride = 3 * head_dim + 5;
            let data: Vec<f32> = (0..tokens * stride).map(|_| rng.gen_range(-2f32..2.0)).collect();
            let head = HeadView { data: &data, tokens, head_dim, row_stride: stride, q: 1, k: 1 + head_dim, v: 1 + 2 * head_dim };
            let mask: Vec<f32> = (0..tokens)
                .map(|j| if j > 0 && j + padded >= tokens { -1e4 } else { 0.0 })
                .collect();
            let scale = 1.0 / (head_dim as f32).sqrt();
            let want = naive(&head, scale, &mask);
            let out_stride = head_dim + 2;
            let mut out = vec![f32::NAN; tokens * out_stride];
            let mut scratch = Scratch::default();
            // SAFETY: `out` holds `tokens` rows of `out_stride`.
            unsafe { attend_head(head, scale, &mask, &mut scratch, out.as_mut_ptr(), out_stride) };
            for i in 0..tokens {
                for c in 0..head_dim {
                    let (g, w) = (out[i * out_stride + c] as f64, want[i * head_dim + c]);
                    prop_assert!((g - w).abs() < 1e-5, "row {i} col {c}: {g} vs {w}");
                }
                prop_assert!(out[i * out_stride + head_dim].is_nan(), "wrote past the head");
            }
        }
    }
}
