//! Element-wise and row-wise ops of a transformer layer on plain f32 slices, written so the
//! compiler vectorises them (fixed-width chunk accumulators, branch-free exp and erf) and compiled
//! per instruction set by [`multiversion`](crate::kernels::multiversion): GELU, softmax, layer norm.

use crate::kernels::{multiversion, Isa};

/// Lanes of the chunked reductions: a multiple of every vector width in use.
const LANES: usize = 16;

/// `e^x` to about 2e-7 relative error, branch-free so that it vectorises: `2^n * p(r)` with
/// `x = n ln 2 + r`, `|r| <= ln 2 / 2`, and a degree-6 polynomial. Inputs are clamped to
/// [-87, 88], so it never returns infinity or a denormal.
#[inline(always)]
pub fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer in any vector width.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// `erf(z)` to about 3e-7 absolute error (Abramowitz and Stegun 7.1.26 with [`exp_approx`]).
#[inline(always)]
pub fn erf_approx(z: f32) -> f32 {
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_72) * t
        + 0.254_829_6)
        * t;
    (1.0 - poly * exp_approx(-a * a)).copysign(z)
}

#[inline(always)]
fn gelu_generic(x: &mut [f32]) {
    const INV_SQRT2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    for v in x.iter_mut() {
        *v = 0.5 * *v * (1.0 + erf_approx(*v * INV_SQRT2));
    }
}

multiversion! {
    /// [`gelu_erf_in_place`] from the portable source, compiled per instruction set.
    pub fn gelu_erf_autovec(x: &mut [f32]) => gelu_generic
}

/// Elements one thread takes at a time in the parallel element-wise kernels.
const PARALLEL_CHUNK: usize = 16 * 1024;

/// Exact (erf) GELU in place, `x * Phi(x)`, within 1e-6 of the exact function for |x| <= 10;
/// long buffers are split over the threads.
pub fn gelu_erf_in_place(x: &mut [f32]) {
    use rayon::prelude::*;
    if x.len() > 2 * PARALLEL_CHUNK {
        x.par_chunks_mut(PARALLEL_CHUNK)
            .for_each(gelu_erf_one_thread);
    } else {
        gelu_erf_one_thread(x);
    }
}

fn gelu_erf_one_thread(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::get().avx512() {
        // SAFETY: the CPU has AVX-512 F (detected at run time).
        return unsafe { crate::kernels::x86::avx512::gelu_in_place(x) };
    }
    gelu_erf_autovec(x)
}

#[inline(always)]
fn chunked_sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += *v;
        }
    }
    acc.iter().sum::<f32>() + rest
}

#[inline(always)]
fn chunked_max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = a.max(*v);
        }
    }
    acc.iter().fold(rest, |m, v| m.max(*v))
}

#[inline(always)]
fn softmax_generic(scores: &mut [f32], cols: usize, mask_bias: &[f32]) {
    for row in scores.chunks_exact_mut(cols) {
        for (s, m) in row.iter_mut().zip(mask_bias) {
            *s += *m;
        }
        let max = chunked_max(row);
        for s in row.iter_mut() {
            *s = exp_approx(*s - max);
        }
        let inv = 1.0 / chunked_sum(row);
        for s in row.iter_mut() {
            *s *= inv;
        }
    }
}

multiversion! {
    /// [`softmax_rows_in_place`] from the portable source, compiled per instruction set.
    pub fn softmax_rows_autovec(scores: &mut [f32], cols: usize, mask_bias: &[f32]) => softmax_generic
}

/// Softmax of each row (`cols` wide) of `scores` in place, after adding `mask_bias` (one value
/// per column: 0 for a real token, a large negative number for padding).
pub fn softmax_rows_in_place(scores: &mut [f32], cols: usize, mask_bias: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::get().avx512() {
        // SAFETY: the CPU has AVX-512 F (detected at run time).
        return unsafe {
            crate::kernels::x86::avx512::softmax_rows_in_place(scores, cols, mask_bias)
        };
    }
    softmax_rows_autovec(scores, cols, mask_bias)
}

#[inline(always)]
fn layer_norm_generic(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let cols = gamma.len();
    for row in x.chunks_exact_mut(cols) {
        let mean = chunked_sum(row) / cols as f32;
        let mut acc = [0f32; LANES];
        let chunks = row.chunks_exact(LANES);
        let rest: f32 = chunks
            .remainder()
            .iter()
            .map(|v| (v - mean) * (v - mean))
            .sum();
        for c in chunks {
            for (a, v) in acc.iter_mut().zip(c) {
                *a += (*v - mean) * (*v - mean);
            }
        }
        let var = (acc.iter().sum::<f32>() + rest) / cols as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

multiversion! {
    /// Layer normalisation of each row (`gamma.len()` wide) of `x` in place.
    pub fn layer_norm_rows_in_place(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) => layer_norm_generic
}

/// Fills each `bias.len()`-wide row of `dst` with `bias`, plus the same row of `residual` if given.
pub fn fill_rows(dst: &mut [f32], bias: &[f32], residual: Option<&[f32]>) {
    match residual {
        Some(res) => {
            for (row, res_row) in dst
                .chunks_exact_mut(bias.len())
                .zip(res.chunks_exact(bias.len()))
            {
                for ((d, b), r) in row.iter_mut().zip(bias).zip(res_row) {
                    *d = b + r;
                }
            }
        }
        None => {
            for row in dst.chunks_exact_mut(bias.len()) {
                row.copy_from_slice(bias);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use proptest::prelude::*;

    fn exact_erf(x: f64) -> f64 {
        // erf by its Taylor series (converges for |x| <= 6 in f64 with enough terms).
        if x.abs() > 4.0 {
            return x.signum();
        }
        let mut sum = 0f64;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs().max(1e-300) || n < 3.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
            if n > 200.0 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn exp_matches_std_over_its_range() {
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let (got, want) = (exp_approx(x) as f64, (x as f64).exp());
            assert!(
                ((got - want) / want).abs() < 5e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert!(exp_approx(-1e9) > 0.0 && exp_approx(-1e9) < 1e-37);
        assert!(exp_approx(1e9).is_finite());
    }

    #[test]
    fn erf_matches_the_series() {
        for i in -600..=600 {
            let x = i as f32 / 100.0;
            let (got, want) = (erf_approx(x) as f64, exact_erf(x as f64));
            assert!((got - want).abs() < 5e-7, "erf({x}) = {got}, want {want}");
        }
    }

    proptest! {
        #[test]
        fn gelu_matches_candle_gelu_erf(xs in prop::collection::vec(-12f32..12.0, 1..100)) {
            let want = Tensor::new(xs.as_slice(), &Device::Cpu).unwrap().gelu_erf().unwrap()
                .to_vec1::<f32>().unwrap();
            let mut got = xs.clone();
            gelu_erf_in_place(&mut got);
            for (g, w) in got.iter().zip(&want) {
                prop_assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
            }
        }

        #[test]
        fn softmax_matches_the_straightforward_one(
            cols in 1usize..40, rows in 1usize..5, seed in 0u64..1000, masked in 0usize..40,
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let scores: Vec<f32> = (0..rows * cols).map(|_| rng.gen_range(-20f32..20.0)).collect();
            let mask: Vec<f32> = (0..cols).map(|c| if c > 0 && c >= cols - masked.min(cols - 1) { -1e4 } else { 0.0 }).collect();
            let mut got = scores.clone();
            softmax_rows_in_place(&mut got, cols, &mask);
            for (r, row) in scores.chunks(cols).enumerate() {
                let shifted: Vec<f64> = row.iter().zip(&mask).map(|(s, m)| (*s + *m) as f64).collect();
                let max = shifted.iter().cloned().fold(f64::MIN, f64::max);
                let total: f64 = shifted.iter().map(|v| (v - max).exp()).sum();
                for (c, v) in shifted.iter().enumerate() {
                    let want = (v - max).exp() / total;
                    prop_assert!((got[r * cols + c] as f64 - want).abs() < 1e-6);
                }
            }
        }

        #[test]
        fn layer_norm_matches_candle(cols in 1usize..70, rows in 1usize..4, seed in 0u64..1000) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut r = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-3f32..3.0)).collect() };
            let (x, gamma, beta) = (r(rows * cols), r(cols), r(cols));
            let dev = Device::Cpu;
            let want = candle_nn::ops::layer_norm(
                &Tensor::from_vec(x.clone(), (rows, cols), &dev).unwrap(),
                &Tensor::new(gamma.as_slice(), &dev).unwrap(),
                &Tensor::new(beta.as_slice(), &dev).unwrap(),
                1e-12,
            ).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let x_rows = x.clone();
            let mut got = x;
            layer_norm_rows_in_place(&mut got, &gamma, &beta, 1e-12);
            // Relative to the output's size and to the row's conditioning: when a row's values
            // are nearly equal (two columns often are), the variance cancels in f32 in both
            // implementations, with an error of about f32 epsilon x (mean / std)^2 (seen:
            // -1.5847902 vs -1.5835559 for 2 columns).
            for (r, (got_row, want_row)) in got.chunks(cols).zip(want.chunks(cols)).enumerate() {
                let row = &x_rows[r * cols..(r + 1) * cols];
                let mean = row.iter().map(|v| *v as f64).sum::<f64>() / cols as f64;
                let var = row.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / cols as f64;
                let cond = (mean * mean / var.max(1e-30)).min(1e9);
                for (g, w) in got_row.iter().zip(want_row) {
                    let tol = (1e-4 + 1e-6 * cond) * (1.0 + w.abs() as f64);
                    prop_assert!(((g - w).abs() as f64) <= tol, "{g} vs {w} (row conditioning {cond:.1})");
                }
            }
        }
    }

    #[test]
    fn long_buffers_split_over_threads_give_the_same_gelu() {
        let xs: Vec<f32> = (0..100_003)
            .map(|i| (i % 997) as f32 / 50.0 - 10.0)
            .collect();
        let mut parallel = xs.clone();
        gelu_erf_in_place(&mut parallel);
        let mut portable = xs;
        gelu_generic(&mut portable);
        for (p, q) in parallel.iter().zip(&portable) {
            assert!((p - q).abs() <= 1e-6 * (1.0 + q.abs()), "{p} vs {q}");
        }
    }

    #[test]
    fn fill_rows_adds_the_residual() {
        let mut dst = vec![0.0; 4];
        fill_rows(&mut dst, &[1.0, 2.0], Some(&[10.0, 20.0, 30.0, 40.0]));
        assert_eq!(dst, vec![11.0, 22.0, 31.0, 42.0]);
        fill_rows(&mut dst, &[1.0, 2.0], None);
        assert_eq!(dst, vec![1.0, 2.0, 1.0, 2.0]);
    }
}
