//! Latency storage whose memory does not grow with the iteration count, so that the worker's own
//! samples never show up in the peak memory it reports.
//!
//! A [`LatencyRecorder`] is allocated once, before the model is loaded, and keeps:
//! - the exact count, mean and variance (Welford's streaming update), minimum and maximum of every
//!   iteration;
//! - up to [`KEPT_CAPACITY`] samples in their order; when full, every other one is dropped and from
//!   then on only every 2nd (then 4th, ...) iteration is kept, so the kept samples are always the
//!   window evenly strided (what a record keeps for resampling);
//! - an HDR histogram (3 significant digits, 1 ns to an hour) of every iteration.
//!
//! Percentiles are exact (type 7 over every sample, as [`crate::stats`] defines them) while every
//! iteration is kept, that is up to [`KEPT_CAPACITY`] iterations; beyond, they come from the
//! histogram, within 0.1% of the exact value.

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::stats::{
    bootstrap_ci, mean_interval, median_of, percentile_sorted, thin_samples, tukey_outliers,
    LatencyStats, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, MAX_RESAMPLED,
};

/// Samples kept in order (2^15: 256 KiB).
pub const KEPT_CAPACITY: usize = 1 << 15;

/// Longest latency the histogram resolves, ns (an hour); longer ones count at that value.
const HIGHEST_NS: u64 = 3_600_000_000_000;

/// Bounded latency storage; see the module documentation.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    kept: Vec<f64>,
    stride: usize,
    count: usize,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    histogram: Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    /// An empty recorder with all its memory allocated.
    pub fn new() -> Self {
        // Fails only for bounds below 1, a low bound over half the high one, or more than 5
        // digits: never for these constants (the tests build one).
        #[allow(clippy::expect_used)]
        let histogram = Histogram::new_with_bounds(1, HIGHEST_NS, 3)
            .expect("constant histogram bounds are valid");
        Self {
            kept: Vec::with_capacity(KEPT_CAPACITY),
            stride: 1,
            count: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            histogram,
        }
    }

    /// Records one latency, ms.
    pub fn record(&mut self, ms: f64) {
        if self.count.is_multiple_of(self.stride) {
            if self.kept.len() == KEPT_CAPACITY {
                let mut i = 0;
                self.kept.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride *= 2;
            }
            if self.count.is_multiple_of(self.stride) {
                self.kept.push(ms);
            }
        }
        self.count += 1;
        let delta = ms - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (ms - self.mean);
        self.min = self.min.min(ms);
        self.max = self.max.max(ms);
        self.histogram
            .saturating_record(((ms * 1e6).round() as u64).clamp(1, HIGHEST_NS));
    }

    /// Iterations recorded.
    pub fn count(&self) -> usize {
        self.count
    }

    /// True when every iteration is kept, so percentiles are exact.
    pub fn is_exact(&self) -> bool {
        self.stride == 1
    }

    /// The kept samples, in order: every iteration, or every `stride`-th.
    pub fn kept(&self) -> &[f64] {
        &self.kept
    }

    /// Mean of every iteration, ms.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Sample standard deviation of every iteration (n - 1), ms; 0 for fewer than two.
    pub fn std(&self) -> f64 {
        if self.count > 1 {
            (self.m2 / (self.count - 1) as f64).sqrt()
        } else {
            0.0
        }
    }

    /// Fastest and slowest iteration, ms.
    pub fn min_max(&self) -> (f64, f64) {
        (self.min, self.max)
    }

    /// The summary of every iteration (`None` before the first): exact count, mean, standard
    /// deviation, minimum and maximum; percentiles as [`LatencyRecorder::percentile`]; the
    /// median's bootstrap interval from the kept samples thinned to [`MAX_RESAMPLED`] (as the
    /// record keeps them, so it is reproducible from the record); Tukey outliers of every sample
    /// while all are kept, else of the kept ones.
    pub fn stats(&self) -> Option<LatencyStats> {
        if self.count == 0 {
            return None;
        }
        let resampled = thin_samples(&self.kept, MAX_RESAMPLED);
        let mut sorted_kept = self.kept.clone();
        sorted_kept.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if self.is_exact() {
                percentile_sorted(&sorted_kept, p)
            } else {
                self.percentile(p)
            }
        };
        let std = self.std();
        Some(LatencyStats {
            mean_ms: self.mean,
            p50_ms: pct(50.0),
            p90_ms: pct(90.0),
            p99_ms: pct(99.0),
            min_ms: self.min,
            max_ms: self.max,
            std_ms: std,
            iterations: self.count,
            mean_ci95_ms: mean_interval(self.mean, std, self.count),
            p50_ci95_ms: bootstrap_ci(
                &resampled,
                median_of,
                BOOTSTRAP_RESAMPLES,
                &mut ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED + 1),
            ),
            outliers: tukey_outliers(&sorted_kept),
        })
    }

    /// The p-th percentile (0..=100), ms: type 7 over every iteration while all are kept, else
    /// the histogram's value (within 0.1%), clamped into min..max.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.is_exact() {
            let mut sorted = self.kept.clone();
            sorted.sort_by(f64::total_cmp);
            return percentile_sorted(&sorted, p);
        }
        let ns = self.histogram.median_equivalent(
            self.histogram
                .value_at_quantile(p.clamp(0.0, 100.0) / 100.0),
        );
        (ns as f64 / 1e6).clamp(self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_capacity_every_figure_is_exact() {
        let samples: Vec<f64> = (0..1000).map(|i| 1.0 + f64::from(i % 37) * 0.01).collect();
        let mut r = LatencyRecorder::new();
        for &s in &samples {
            r.record(s);
        }
        let exact = crate::stats::LatencyStats::from_samples(&samples).unwrap();
        assert!(r.is_exact());
        assert_eq!(r.kept(), samples.as_slice());
        assert!((r.mean() - exact.mean_ms).abs() < 1e-12);
        assert!((r.std() - exact.std_ms).abs() < 1e-12);
        assert_eq!(r.percentile(50.0), exact.p50_ms);
        assert_eq!(r.percentile(99.0), exact.p99_ms);
        assert_eq!(r.min_max(), (exact.min_ms, exact.max_ms));
        let st = r.stats().unwrap();
        assert_eq!(st.p50_ci95_ms, exact.p50_ci95_ms);
        assert_eq!(st.outliers, exact.outliers);
        assert_eq!(st.iterations, 1000);
    }

    #[test]
    fn beyond_capacity_memory_stays_put_and_percentiles_stay_within_a_thousandth() {
        let n = KEPT_CAPACITY * 5 + 123;
        let samples: Vec<f64> = (0..n)
            .map(|i| 0.5 + ((i * 7919) % 1000) as f64 * 0.003)
            .collect();
        let mut r = LatencyRecorder::new();
        let capacity = r.kept.capacity();
        for &s in &samples {
            r.record(s);
        }
        assert_eq!(r.kept.capacity(), capacity, "the kept samples never grow");
        assert!(r.kept().len() <= KEPT_CAPACITY);
        assert!(!r.is_exact());
        // The kept samples are the window evenly strided, in order.
        let strided: Vec<f64> = samples.iter().step_by(r.stride).copied().collect();
        assert_eq!(r.kept(), strided.as_slice());
        let exact = crate::stats::LatencyStats::from_samples(&samples).unwrap();
        assert_eq!(r.count(), n);
        assert!((r.mean() - exact.mean_ms).abs() < 1e-9);
        for (p, want) in [
            (50.0, exact.p50_ms),
            (90.0, exact.p90_ms),
            (99.0, exact.p99_ms),
        ] {
            let got = r.percentile(p);
            assert!((got - want).abs() <= 1e-3 * want, "p{p}: {got} vs {want}");
        }
    }
}
