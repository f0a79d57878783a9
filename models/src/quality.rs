//! Quality metrics that need no hardware: accuracy against labels, agreement between two models,
//! and what a language model's quality is made of.

use serde::{Deserialize, Serialize};

/// Percentage of `predicted` equal to `expected` (0..100). Empty input gives 0.
pub fn accuracy_pct(predicted: &[u32], expected: &[u32]) -> f64 {
    if expected.is_empty() {
        return 0.0;
    }
    let hits = predicted
        .iter()
        .zip(expected)
        .filter(|(p, e)| p == e)
        .count();
    100.0 * hits as f64 / expected.len() as f64
}

/// How a variant and its baseline fared on the same test items, item by item (the 2x2 table of a
/// paired test such as McNemar's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairedOutcomes {
    /// Items both got right.
    pub both_right: usize,
    /// Items only the baseline got right.
    pub baseline_only: usize,
    /// Items only the variant got right.
    pub variant_only: usize,
    /// Items both got wrong.
    pub both_wrong: usize,
}

impl PairedOutcomes {
    /// Counts the table from whether each item was right for the baseline and the variant (the
    /// same items, in the same order).
    pub fn from_correct(baseline: &[bool], variant: &[bool]) -> Self {
        let mut t = Self {
            both_right: 0,
            baseline_only: 0,
            variant_only: 0,
            both_wrong: 0,
        };
        for (&b, &v) in baseline.iter().zip(variant) {
            match (b, v) {
                (true, true) => t.both_right += 1,
                (true, false) => t.baseline_only += 1,
                (false, true) => t.variant_only += 1,
                (false, false) => t.both_wrong += 1,
            }
        }
        t
    }

    /// Items in the table.
    pub fn items(&self) -> usize {
        self.both_right + self.baseline_only + self.variant_only + self.both_wrong
    }
}

/// Whether each prediction equals its label.
pub fn correct(predicted: &[u32], expected: &[u32]) -> Vec<bool> {
    predicted
        .iter()
        .zip(expected)
        .map(|(p, e)| p == e)
        .collect()
}

/// The quality of a language-model variant against its reference (see `llm::quality`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LanguageQuality {
    /// Perplexity of the variant on the scored tokens.
    pub perplexity: f64,
    /// Its standard error (llama-perplexity's `+/-`).
    pub perplexity_err: f64,
    /// Perplexity of the reference on the same tokens.
    pub reference_perplexity: f64,
    /// Mean KL divergence of the variant's next-token distribution from the reference's (nats).
    pub kld_mean: f64,
    /// 99th percentile of the same.
    pub kld_p99: f64,
    /// Scored tokens whose most likely next token is the reference's, in percent.
    pub top1_agreement_pct: f64,
    /// Tokens per chunk.
    pub ctx: usize,
    /// Chunks.
    pub chunks: usize,
    /// Tokens scored (`chunks * (ctx - ctx / 2 - 1)`).
    pub scored_tokens: usize,
    /// What the reference is.
    pub reference: String,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_paired_table_counts_each_item_once() {
        let t = super::PairedOutcomes::from_correct(
            &[true, true, false, false, true],
            &[true, false, true, false, true],
        );
        assert_eq!(
            (t.both_right, t.baseline_only, t.variant_only, t.both_wrong),
            (2, 1, 1, 1)
        );
        assert_eq!(t.items(), 5);
    }

    use super::*;

    #[test]
    fn accuracy_counts_matches() {
        assert_eq!(accuracy_pct(&[1, 2, 3, 4], &[1, 2, 0, 4]), 75.0);
        assert_eq!(accuracy_pct(&[], &[]), 0.0);
    }
}
