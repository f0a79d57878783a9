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
    use super::*;

    #[test]
    fn accuracy_counts_matches() {
        assert_eq!(accuracy_pct(&[1, 2, 3, 4], &[1, 2, 0, 4]), 75.0);
        assert_eq!(accuracy_pct(&[], &[]), 0.0);
    }
}
