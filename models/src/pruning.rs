//! What pruning shares across model families: where a magnitude threshold is taken, the norm that
//! ranks neurons, channels or heads, how many units survive a ratio, and which.

use serde::{Deserialize, Serialize};

/// Where the magnitude threshold of unstructured pruning is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Each layer loses the same fraction of its weights.
    PerLayer,
    /// One threshold over all weights: layers lose different fractions.
    Global,
}

/// The norm that ranks neurons or channels in structured pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// Sum of absolute values.
    L1,
    /// Euclidean norm.
    L2,
}

/// How many of `total` units survive removing `ratio` of them: rounded, at least one.
pub fn kept_count(total: usize, ratio: f64) -> usize {
    ((total as f64 * (1.0 - ratio)).round() as usize).clamp(1, total.max(1))
}

/// Indices of the `keep` largest scores (ties to the lower index), ascending.
pub fn top_indices(scores: &[f32], keep: usize) -> Vec<u32> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut kept: Vec<u32> = order.into_iter().take(keep).map(|i| i as u32).collect();
    kept.sort();
    kept
}
