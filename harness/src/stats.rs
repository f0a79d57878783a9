//! Summary statistics of latency samples.
//!
//! Percentiles use linear interpolation between the closest ranks (Hyndman and Fan's type 7, the
//! default of numpy and R): for sorted samples x[0..n] and p in 0..=100, h = (n - 1) p / 100 and the
//! percentile is x[floor h] + (h - floor h)(x[floor h + 1] - x[floor h]). The standard deviation is
//! the sample one (n - 1 in the denominator).
//!
//! The mean's interval is mean +/- 1.96 standard errors over every sample ([`mean_interval`]);
//! other confidence intervals are percentile bootstraps: [`BOOTSTRAP_RESAMPLES`] resamples with
//! replacement from a ChaCha8 generator seeded with [`BOOTSTRAP_SEED`] (so a record's interval is
//! reproducible from its samples), the 2.5th and 97.5th percentiles of the resampled statistic.
//! Outliers are counted with Tukey's fences (mild: beyond 1.5 IQR of the quartiles; severe: beyond
//! 3 IQR) and reported, never dropped.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Resamples per bootstrap interval.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;
/// Most samples a bootstrap resamples (and a record keeps): evenly thinned beyond that.
pub const MAX_RESAMPLED: usize = 2000;
/// Seed of the bootstrap generator.
pub const BOOTSTRAP_SEED: u64 = 0x51_1b_e2_c4;

/// A 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

impl Interval {
    /// True when `x` lies inside (bounds included).
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// Percentile-bootstrap 95% interval of `statistic` over `samples`, with `resamples` draws from
/// `rng`. `None` for fewer than two samples.
pub fn bootstrap_ci(
    samples: &[f64],
    statistic: impl Fn(&mut [f64]) -> f64,
    resamples: usize,
    rng: &mut ChaCha8Rng,
) -> Option<Interval> {
    if samples.len() < 2 || resamples == 0 {
        return None;
    }
    let mut stats = Vec::with_capacity(resamples);
    let mut buf = vec![0.0; samples.len()];
    for _ in 0..resamples {
        resample_into(&mut buf, samples, rng);
        stats.push(statistic(&mut buf));
    }
    central_95(stats)
}

/// Two-sample percentile-bootstrap 95% interval of the change of `statistic`, `current` over
/// `baseline`, in percent: each resample draws both sides independently (baseline first) and
/// skips draws whose baseline statistic is not positive. `None` with fewer than two samples on
/// either side.
pub fn two_sample_change_ci(
    baseline: &[f64],
    current: &[f64],
    statistic: impl Fn(&mut [f64]) -> f64,
    resamples: usize,
    rng: &mut ChaCha8Rng,
) -> Option<Interval> {
    if baseline.len() < 2 || current.len() < 2 {
        return None;
    }
    let mut a = vec![0.0; baseline.len()];
    let mut b = vec![0.0; current.len()];
    let mut changes = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        resample_into(&mut a, baseline, rng);
        resample_into(&mut b, current, rng);
        let base = statistic(&mut a);
        if base > 0.0 {
            changes.push(100.0 * (statistic(&mut b) / base - 1.0));
        }
    }
    central_95(changes)
}

/// Fills `buf` with a two-level resample of `groups` (Kalibera and Jones, ISMM 2013): as many
/// groups as there are, drawn with replacement, and from each drawn group as many of its samples
/// as it has, drawn with replacement. The variation between groups (rounds, processes, minutes)
/// then counts in the interval, not only the variation within one.
fn two_level_resample_into(buf: &mut Vec<f64>, groups: &[&[f64]], rng: &mut ChaCha8Rng) {
    buf.clear();
    for _ in 0..groups.len() {
        let g = groups[rng.gen_range(0..groups.len())];
        for _ in 0..g.len() {
            buf.push(g[rng.gen_range(0..g.len())]);
        }
    }
}

/// Two-level percentile-bootstrap 95% interval of `statistic` over samples grouped by round
/// (see `two_level_resample_into`); with one group it is the ordinary bootstrap. `None` with
/// fewer than two samples, or an empty group.
pub fn two_level_ci(
    groups: &[&[f64]],
    statistic: impl Fn(&mut [f64]) -> f64,
    resamples: usize,
    rng: &mut ChaCha8Rng,
) -> Option<Interval> {
    let total: usize = groups.iter().map(|g| g.len()).sum();
    if total < 2 || resamples == 0 || groups.iter().any(|g| g.is_empty()) {
        return None;
    }
    let mut buf = Vec::with_capacity(total * 2);
    let mut stats = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        two_level_resample_into(&mut buf, groups, rng);
        stats.push(statistic(&mut buf));
    }
    central_95(stats)
}

/// [`two_sample_change_ci`] with each side resampled in two levels, rounds then iterations.
pub fn two_level_change_ci(
    baseline: &[&[f64]],
    current: &[&[f64]],
    statistic: impl Fn(&mut [f64]) -> f64,
    resamples: usize,
    rng: &mut ChaCha8Rng,
) -> Option<Interval> {
    let enough = |groups: &[&[f64]]| {
        groups.iter().map(|g| g.len()).sum::<usize>() >= 2 && groups.iter().all(|g| !g.is_empty())
    };
    if !enough(baseline) || !enough(current) {
        return None;
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut changes = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        two_level_resample_into(&mut a, baseline, rng);
        two_level_resample_into(&mut b, current, rng);
        let base = statistic(&mut a);
        if base > 0.0 {
            changes.push(100.0 * (statistic(&mut b) / base - 1.0));
        }
    }
    central_95(changes)
}

/// Student's t 0.975 quantile for `df` degrees of freedom (1.96 beyond 30).
pub fn t_975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => T[df - 1],
        _ => 1.96,
    }
}

/// A ratio over paired rounds: the geometric mean of `baseline / current` over the rounds both
/// measured, with the 95% t-interval of the mean log-ratio (df = rounds - 1) taken back by exp.
/// Each round's ratio compares two cells measured minutes apart in the same round, so the drift
/// between rounds cancels; the interval is over rounds, the level where the variance is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedRatio {
    /// Geometric mean of the per-round ratios.
    pub ratio: f64,
    /// 95% interval.
    pub ci95: Interval,
    /// Rounds paired.
    pub rounds: usize,
}

/// The [`PairedRatio`] of `pairs` (baseline, current); `None` with fewer than two pairs or a
/// figure that is not positive.
pub fn paired_ratio(pairs: &[(f64, f64)]) -> Option<PairedRatio> {
    if pairs.len() < 2 || pairs.iter().any(|&(b, c)| !(b > 0.0 && c > 0.0)) {
        return None;
    }
    let logs: Vec<f64> = pairs.iter().map(|&(b, c)| (b / c).ln()).collect();
    let n = logs.len() as f64;
    let mean = logs.iter().sum::<f64>() / n;
    let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let half = t_975(logs.len() - 1) * (var / n).sqrt();
    Some(PairedRatio {
        ratio: mean.exp(),
        ci95: Interval {
            lo: (mean - half).exp(),
            hi: (mean + half).exp(),
        },
        rounds: logs.len(),
    })
}

/// The 95% t-interval of the mean of `values` (df = n - 1); `None` for fewer than two.
pub fn t_interval(values: &[f64]) -> Option<Interval> {
    if values.len() < 2 {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let half = t_975(values.len() - 1) * (var / n).sqrt();
    Some(Interval {
        lo: mean - half,
        hi: mean + half,
    })
}

/// Fills `buf` with draws (with replacement) from `samples`.
fn resample_into(buf: &mut [f64], samples: &[f64], rng: &mut ChaCha8Rng) {
    for slot in buf.iter_mut() {
        *slot = samples[rng.gen_range(0..samples.len())];
    }
}

/// The 2.5th and 97.5th percentiles of bootstrap statistics; `None` when there are none.
fn central_95(mut stats: Vec<f64>) -> Option<Interval> {
    stats.sort_by(f64::total_cmp);
    (!stats.is_empty()).then(|| Interval {
        lo: percentile_sorted(&stats, 2.5),
        hi: percentile_sorted(&stats, 97.5),
    })
}

/// Mean of a slice (the statistic form used by the bootstrap).
pub fn mean_of(xs: &mut [f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

/// Median of a slice (type 7; reorders the slice in place, in linear time).
pub fn median_of(xs: &mut [f64]) -> f64 {
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    let lo = (n - 1) / 2;
    let (_, &mut lo_value, right) = xs.select_nth_unstable_by(lo, f64::total_cmp);
    if n % 2 == 1 {
        lo_value
    } else {
        let hi_value = right.iter().copied().fold(f64::INFINITY, f64::min);
        0.5 * (lo_value + hi_value)
    }
}

/// Counts of outliers by Tukey's fences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outliers {
    /// Beyond 1.5 IQR but within 3 IQR of the quartiles (either side).
    pub mild: usize,
    /// Beyond 3 IQR of the quartiles (either side).
    pub severe: usize,
}

/// Tukey outlier counts of `sorted` (ascending).
pub fn tukey_outliers(sorted: &[f64]) -> Outliers {
    if sorted.len() < 4 {
        return Outliers::default();
    }
    let q1 = percentile_sorted(sorted, 25.0);
    let q3 = percentile_sorted(sorted, 75.0);
    let iqr = q3 - q1;
    let mut out = Outliers::default();
    for &x in sorted {
        let d = if x < q1 { q1 - x } else { x - q3 };
        if d > 3.0 * iqr {
            out.severe += 1;
        } else if d > 1.5 * iqr {
            out.mild += 1;
        }
    }
    out
}

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
    /// 95% interval of the mean over every sample (see [`mean_interval`]).
    pub mean_ci95_ms: Option<Interval>,
    /// Bootstrap 95% interval of the median.
    pub p50_ci95_ms: Option<Interval>,
    /// Tukey outlier counts (reported, not dropped).
    pub outliers: Outliers,
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
    /// Summarises `samples_ms`; `None` when there are no samples. The mean and its interval come
    /// from every sample (the interval is mean +/- 1.96 standard errors, reproducible from the
    /// record's mean, standard deviation and iteration count), so the interval always holds its
    /// mean; the median's bootstrap interval is computed from the samples thinned to
    /// [`MAX_RESAMPLED`] (as a record keeps them), so that it can be reproduced from the record.
    pub fn from_samples(samples_ms: &[f64]) -> Option<Self> {
        if samples_ms.is_empty() {
            return None;
        }
        let kept = thin_samples(samples_ms, MAX_RESAMPLED);
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
            mean_ci95_ms: mean_interval(mean, var.sqrt(), sorted.len()),
            p50_ci95_ms: bootstrap_ci(
                &kept,
                median_of,
                BOOTSTRAP_RESAMPLES,
                &mut ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED + 1),
            ),
            outliers: tukey_outliers(&sorted),
        })
    }
}

/// The 95% interval of a mean from `n` samples with standard deviation `std` (normal
/// approximation: mean +/- 1.96 std / sqrt(n)); `None` for fewer than two samples.
pub fn mean_interval(mean: f64, std: f64, n: usize) -> Option<Interval> {
    if n < 2 {
        return None;
    }
    let half = 1.96 * std / (n as f64).sqrt();
    Some(Interval {
        lo: mean - half,
        hi: mean + half,
    })
}

/// At most `max` samples of `samples`, evenly strided and in their original order, so that a
/// record keeps enough raw latencies to resample without growing with the iteration count.
pub fn thin_samples(samples: &[f64], max: usize) -> Vec<f64> {
    if samples.len() <= max || max == 0 {
        return samples.to_vec();
    }
    (0..max).map(|i| samples[i * samples.len() / max]).collect()
}

/// McNemar's exact test of a paired 2x2 table: the two-sided binomial p-value of the discordant
/// items, `baseline_only` against `variant_only`, under "either is as likely" (p = 0.5). 1 when no
/// item is discordant.
pub fn mcnemar_exact_p(baseline_only: usize, variant_only: usize) -> f64 {
    let m = baseline_only + variant_only;
    if m == 0 {
        return 1.0;
    }
    let k = baseline_only.min(variant_only);
    // ln C(m, i) built up term by term; the tail summed in log space from its largest term.
    let ln_half_m = m as f64 * std::f64::consts::LN_2;
    let mut ln_choose = 0.0;
    let mut terms = Vec::with_capacity(k + 1);
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((m - i + 1) as f64).ln() - (i as f64).ln();
        }
        terms.push(ln_choose - ln_half_m);
    }
    let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tail = top.exp() * terms.iter().map(|t| (t - top).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

/// Half-width, in points, of the 95% interval of a paired difference of two accuracies from the
/// discordant counts of `n` items: Wald's interval with Agresti and Min's adjustment (half an
/// item added to each of the four cells), which keeps its coverage at small counts.
pub fn paired_difference_half_width(baseline_only: usize, variant_only: usize, n: usize) -> f64 {
    let n_adj = n as f64 + 2.0;
    let p12 = (baseline_only as f64 + 0.5) / n_adj;
    let p21 = (variant_only as f64 + 0.5) / n_adj;
    let d = p21 - p12;
    let var = ((p12 + p21) - d * d).max(0.0) / n_adj;
    100.0 * 1.96 * var.sqrt()
}

/// The 95% Wilson score interval of a proportion `pct` (percent) measured on `n` items, in
/// percent; `None` without items. Unlike the normal approximation it stays inside 0..100 and is
/// not empty at 0% or 100%.
pub fn wilson_interval_pct(pct: f64, n: usize) -> Option<Interval> {
    if n == 0 || !pct.is_finite() {
        return None;
    }
    let z = 1.96_f64;
    let (p, n) = ((pct / 100.0).clamp(0.0, 1.0), n as f64);
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    Some(Interval {
        lo: 100.0 * (centre - half).max(0.0),
        hi: 100.0 * (centre + half).min(1.0),
    })
}

#[cfg(test)]
mod tests {
    /// Hand-computed: 2 discordant items against 10: P(X <= 2 | 12, 0.5) = (1 + 12 + 66) / 4096
    /// = 0.019287; two-sided 0.038574. 5 against 5 is p = 1. Half-width with 1 and 3 of 359:
    /// p12 = 1.5/361, p21 = 3.5/361, d = 2/361, var = (5/361 - (2/361)^2) / 361.
    #[test]
    fn mcnemar_and_the_paired_interval_match_hand_computed_figures() {
        assert!((mcnemar_exact_p(2, 10) - 0.038574).abs() < 1e-6);
        assert!((mcnemar_exact_p(10, 2) - 0.038574).abs() < 1e-6);
        assert_eq!(mcnemar_exact_p(5, 5), 1.0);
        assert_eq!(mcnemar_exact_p(0, 0), 1.0);
        // Large tables stay finite: 400 against 600 is far from chance.
        let p = mcnemar_exact_p(400, 600);
        assert!(p > 0.0 && p < 1e-9, "{p}");
        let n = 361.0_f64;
        let expected = 100.0 * 1.96 * ((5.0 / n - (2.0 / n).powi(2)) / n).sqrt();
        assert!((paired_difference_half_width(1, 3, 359) - expected).abs() < 1e-12);
        // Pairing is tighter than two independent intervals when few items change: 1.21 points
        // against 2.05 for two accuracies of 98% on 359 items each.
        assert!(paired_difference_half_width(1, 3, 359) < 1.3);
    }

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
    fn tukey_fences_count_mild_and_severe() {
        let mut s: Vec<f64> = (1..=20).map(f64::from).collect();
        s.push(40.0); // q1 = 6.25, q3 = 16.75, IQR 10.5: 40 is 23.25 above q3 (mild)
        s.push(100.0); // 83.25 above q3: severe
        s.sort_by(f64::total_cmp);
        assert_eq!(tukey_outliers(&s), Outliers { mild: 1, severe: 1 });
        assert_eq!(
            tukey_outliers(&[1.0, 2.0, 3.0, 4.0, 5.0]),
            Outliers::default()
        );
    }

    #[test]
    fn paired_ratios_cancel_drift_between_rounds() {
        // The machine slows by 30% in round 2 for both cells: the ratio stays 2 in every round.
        let p = paired_ratio(&[(10.0, 5.0), (13.0, 6.5), (10.0, 5.0)]).unwrap();
        assert!((p.ratio - 2.0).abs() < 1e-12);
        assert!((p.ci95.lo - 2.0).abs() < 1e-9 && (p.ci95.hi - 2.0).abs() < 1e-9);
        let q = paired_ratio(&[(10.0, 5.0), (10.0, 4.0), (10.0, 6.0)]).unwrap();
        assert!(q.ci95.lo < q.ratio && q.ratio < q.ci95.hi);
        assert!(paired_ratio(&[(1.0, 1.0)]).is_none());
        assert!(paired_ratio(&[(1.0, 0.0), (1.0, 1.0)]).is_none());
    }

    #[test]
    fn a_two_level_interval_widens_with_the_spread_between_rounds() {
        let steady: Vec<Vec<f64>> = (0..3)
            .map(|_| (0..200).map(|i| 10.0 + f64::from(i % 5) * 0.01).collect())
            .collect();
        let drifting: Vec<Vec<f64>> = (0..3)
            .map(|r| {
                (0..200)
                    .map(|i| 10.0 * (1.0 + 0.1 * f64::from(r)) + f64::from(i % 5) * 0.01)
                    .collect()
            })
            .collect();
        let width = |groups: &[Vec<f64>]| {
            let refs: Vec<&[f64]> = groups.iter().map(Vec::as_slice).collect();
            let i = two_level_ci(&refs, mean_of, 500, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
            i.hi - i.lo
        };
        // Iterations treated as independent would give both about the same narrow interval.
        assert!(width(&drifting) > 20.0 * width(&steady));
    }

    /// Guards issue 17: with more samples than a record keeps, and a drift over the run, the mean's
    /// interval still holds the mean of every iteration.
    #[test]
    fn the_mean_interval_holds_the_mean_of_every_sample() {
        let s: Vec<f64> = (0..10_000)
            .map(|i| 1.0 + f64::from(i) * 1e-4 + f64::from(i % 7) * 0.01)
            .collect();
        let st = LatencyStats::from_samples(&s).unwrap();
        let m = st.mean_ci95_ms.unwrap();
        assert!(m.contains(st.mean_ms), "{m:?} vs {}", st.mean_ms);
    }

    #[test]
    fn bootstrap_interval_brackets_the_sample_statistic() {
        let s: Vec<f64> = (0..100).map(|i| f64::from(i % 17)).collect();
        let st = LatencyStats::from_samples(&s).unwrap();
        let m = st.mean_ci95_ms.unwrap();
        assert!(m.contains(st.mean_ms) && m.hi > m.lo, "{m:?}");
        let again = LatencyStats::from_samples(&s).unwrap();
        assert_eq!(st, again, "seeded: the same samples give the same interval");
    }

    /// Property: for samples from a known distribution (exponential, rate 1: true median ln 2), the
    /// 95% bootstrap interval of the median holds the true median in at least 90% of 200 trials.
    #[test]
    fn bootstrap_median_interval_covers_the_true_median() {
        let true_median = std::f64::consts::LN_2;
        let mut covered = 0;
        for seed in 0..200u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let samples: Vec<f64> = (0..60).map(|_| -(1.0 - rng.gen::<f64>()).ln()).collect();
            let ci = bootstrap_ci(&samples, median_of, 500, &mut rng).unwrap();
            if ci.contains(true_median) {
                covered += 1;
            }
        }
        assert!(covered >= 180, "covered {covered} of 200");
    }

    /// Property: the two-sample interval of the median change covers the true change (+20%
    /// between two exponential samples of rates 1 and 1/1.2) in at least 90% of 200 trials, and
    /// needs two samples a side.
    #[test]
    fn two_sample_interval_covers_the_true_median_change() {
        let mut covered = 0;
        for seed in 0..200u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut draw = |scale: f64| -> Vec<f64> {
                (0..80)
                    .map(|_| -scale * (1.0 - rng.gen::<f64>()).ln())
                    .collect()
            };
            let (a, b) = (draw(1.0), draw(1.2));
            let ci = two_sample_change_ci(&a, &b, median_of, 500, &mut rng).unwrap();
            if ci.contains(20.0) {
                covered += 1;
            }
        }
        assert!(covered >= 180, "covered {covered} of 200");
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert!(two_sample_change_ci(&[1.0], &[1.0, 2.0], median_of, 10, &mut rng).is_none());
    }

    #[test]
    fn linear_time_median_matches_the_sorted_one() {
        for n in 1..12 {
            let mut xs: Vec<f64> = (0..n)
                .map(|i| f64::from((i * 7) % 5) + f64::from(i) / 10.0)
                .collect();
            let mut sorted = xs.clone();
            sorted.sort_by(f64::total_cmp);
            assert_eq!(
                median_of(&mut xs),
                percentile_sorted(&sorted, 50.0),
                "n = {n}"
            );
        }
    }

    #[test]
    fn thinning_keeps_order_and_bound() {
        let s: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(thin_samples(&s, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(thin_samples(&s, 20), s);
    }

    #[test]
    fn wilson_interval_matches_the_textbook_and_stays_in_range() {
        // 81 of 100: the textbook's [72.2, 87.5].
        let i = wilson_interval_pct(81.0, 100).unwrap();
        assert!(
            (i.lo - 72.2).abs() < 0.1 && (i.hi - 87.5).abs() < 0.1,
            "{i:?}"
        );
        let top = wilson_interval_pct(100.0, 50).unwrap();
        assert!(
            top.hi <= 100.0 && top.lo < 100.0 && top.lo > 90.0,
            "{top:?}"
        );
        assert!(wilson_interval_pct(50.0, 0).is_none());
    }
}
