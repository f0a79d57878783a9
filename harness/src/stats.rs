//! Summary statistics of latency samples.
//!
//! Percentiles use linear interpolation between the closest ranks (Hyndman and Fan's type 7, the
//! default of numpy and R): for sorted samples x[0..n] and p in 0..=100, h = (n - 1) p / 100 and the
//! percentile is x[floor h] + (h - floor h)(x[floor h + 1] - x[floor h]). The standard deviation is
//! the sample one (n - 1 in the denominator).

use serde::{Deserialize, Serialize};

/// Latency of one batch over the timed iterations, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Fastest iteration.
    pub min_ms: f64,
    /// Slowest iteration.
    pub max_ms: f64,
    /// Sample standard deviation.
    pub std_ms: f64,
    /// Number of timed iterations.
    pub iterations: usize,
}

/// The p-th percentile (0..=100) of `sorted` (ascending), by linear interpolation (type 7).
/// Returns NaN for an empty slice.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let h = (n - 1) as f64 * p.clamp(0.0, 100.0) / 100.0;
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

impl LatencyStats {
    /// Summarises `samples_ms`; `None` when there are no samples.
    pub fn from_samples(samples_ms: &[f64]) -> Option<Self> {
        if samples_ms.is_empty() {
            return None;
        }
        let mut sorted = samples_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let mean = sorted.iter().sum::<f64>() / n;
        let var = if sorted.len() > 1 {
            sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Some(Self {
            mean_ms: mean,
            p50_ms: percentile_sorted(&sorted, 50.0),
            p90_ms: percentile_sorted(&sorted, 90.0),
            p99_ms: percentile_sorted(&sorted, 99.0),
            min_ms: sorted[0],
            max_ms: sorted[sorted.len() - 1],
            std_ms: var.sqrt(),
            iterations: sorted.len(),
        })
    }
}

/// At most `max` samples of `samples`, evenly strided and in their original order, so that a
/// record keeps enough raw latencies to resample without growing with the iteration count.
pub fn thin_samples(samples: &[f64], max: usize) -> Vec<f64> {
    if samples.len() <= max || max == 0 {
        return samples.to_vec();
    }
    (0..max).map(|i| samples[i * samples.len() / max]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy_linear() {
        let s = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile_sorted(&s, 50.0), 5.5);
        assert!((percentile_sorted(&s, 90.0) - 9.1).abs() < 1e-12);
        assert!((percentile_sorted(&s, 99.0) - 9.91).abs() < 1e-12);
        assert_eq!(percentile_sorted(&s, 0.0), 1.0);
        assert_eq!(percentile_sorted(&s, 100.0), 10.0);
    }

    #[test]
    fn stats_of_known_samples() {
        let st = LatencyStats::from_samples(&[4.0, 2.0, 6.0]).unwrap();
        assert_eq!(st.mean_ms, 4.0);
        assert_eq!(st.p50_ms, 4.0);
        assert_eq!(st.min_ms, 2.0);
        assert_eq!(st.max_ms, 6.0);
        assert_eq!(st.std_ms, 2.0);
        assert_eq!(st.iterations, 3);
        assert!(LatencyStats::from_samples(&[]).is_none());
    }

    #[test]
    fn thinning_keeps_order_and_bound() {
        let s: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(thin_samples(&s, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(thin_samples(&s, 20), s);
    }
}
