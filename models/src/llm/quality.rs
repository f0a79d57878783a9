//! Quality of a language-model variant against the reference, as llama.cpp's `llama-perplexity`
//! defines it: the held-out text cut into chunks of the context length, each run from an empty
//! cache, and only the second half of each chunk scored (every scored token sees at least half a
//! context): perplexity, the KL divergence of the variant's next-token distribution from the
//! reference's (mean and 99th percentile), and how often both pick the same top token.
//! The reference's log-probabilities are computed once and cached (f16).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::cache::{entry_path, load_or_build};
use crate::error::{ModelError, Result};
use crate::llm::engine::Engine;
use crate::llm::infer::Logits;
use crate::llm::model::Llama;
use crate::quality::LanguageQuality;

/// Tokens per chunk (llama-perplexity's `-c`).
pub const QUALITY_CTX: usize = 512;
/// Chunks scored (llama-perplexity's `--chunks`).
pub const QUALITY_CHUNKS: usize = 4;

/// The held-out chunks of `tokens`: at most `max_chunks` of `ctx` tokens, the first token of each
/// replaced by `bos` where the model adds one (as llama-perplexity does).
pub fn chunks(tokens: &[u32], ctx: usize, max_chunks: usize, bos: Option<u32>) -> Vec<Vec<u32>> {
    tokens
        .chunks_exact(ctx)
        .take(max_chunks)
        .map(|c| {
            let mut c = c.to_vec();
            if let Some(b) = bos {
                c[0] = b;
            }
            c
        })
        .collect()
}

/// The scored positions of a chunk of `ctx` tokens: logits at `j` predict token `j + 1`.
fn scored(ctx: usize) -> std::ops::Range<usize> {
    ctx / 2..ctx - 1
}

fn log_softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|v| ((v - max) as f64).exp()).sum();
    let log_sum = max as f64 + sum.ln();
    row.iter().map(|v| (*v as f64 - log_sum) as f32).collect()
}

/// The index of the largest value (the first of equals): the greedy next token.
pub(crate) fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, v)| {
            if *v > best.1 {
                (i, *v)
            } else {
                best
            }
        })
        .0
}

/// Runs every chunk through `engine` (from an empty cache each) and calls `f(target, log_probs)`
/// for each scored token.
fn score(
    engine: &mut Engine,
    vocab: usize,
    chunks: &[Vec<u32>],
    mut f: impl FnMut(u32, Vec<f32>) -> Result<()>,
) -> Result<()> {
    for chunk in chunks {
        let ctx = chunk.len();
        engine.truncate(0);
        let logits = engine.forward(chunk, Logits::All)?;
        for j in scored(ctx) {
            f(
                chunk[j + 1],
                log_softmax(&logits[j * vocab..(j + 1) * vocab]),
            )?;
        }
    }
    Ok(())
}

/// The reference's log-probabilities of every scored token (`scored x vocab`, f16), cached under
/// `key` (the reference model's and the text's identity).
pub fn reference_log_probs(
    reference: &Llama,
    chunks: &[Vec<u32>],
    cache_dir: &Path,
    key: &str,
) -> Result<Tensor> {
    let path = entry_path(cache_dir, "smollm2-reference-logprobs", key);
    let (tensors, _) = load_or_build(&path, || {
        let vocab = reference.config.vocab;
        let ctx = chunks.iter().map(Vec::len).max().unwrap_or(1);
        let mut engine = Engine::own(reference, ctx);
        let mut rows: Vec<f32> = Vec::new();
        score(&mut engine, vocab, chunks, |_, lp| {
            rows.extend(lp);
            Ok(())
        })?;
        let n = rows.len() / vocab;
        let t = Tensor::from_vec(rows, (n, vocab), &Device::Cpu)?.to_dtype(DType::F16)?;
        Ok(HashMap::from([("log_probs".to_string(), t)]))
    })?;
    tensors
        .get("log_probs")
        .cloned()
        .ok_or_else(|| ModelError::Invalid(format!("{}: no log_probs tensor", path.display())))
}

/// Perplexity with its standard error from negative log-likelihoods.
fn perplexity(nll: &[f64]) -> (f64, f64) {
    let n = nll.len().max(1) as f64;
    let mean = nll.iter().sum::<f64>() / n;
    let var = nll.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let ppl = mean.exp();
    (ppl, ppl * (var / n).sqrt())
}

/// The 99th percentile (nearest rank) of `values`.
fn p99(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((0.99 * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// The quality of the model in `engine` against the reference's cached log-probabilities on
/// `chunks` (the engine's cache must hold a whole chunk).
pub fn language_quality(
    engine: &mut Engine,
    chunks: &[Vec<u32>],
    reference: &Tensor,
    reference_name: &str,
) -> Result<LanguageQuality> {
    let reference = reference.to_dtype(DType::F32)?;
    let (n_ref, vocab) = reference.dims2()?;
    let reference = reference.flatten_all()?.to_vec1::<f32>()?;
    let (mut nll, mut ref_nll, mut kld) = (Vec::new(), Vec::new(), Vec::new());
    let mut agree = 0usize;
    let mut i = 0usize;
    score(engine, vocab, chunks, |target, lp| {
        if i >= n_ref {
            return Err(ModelError::Invalid(
                "the cached reference has fewer scored tokens than the text; delete the cache entry smollm2-reference-logprobs-*".into(),
            ));
        }
        let r = &reference[i * vocab..(i + 1) * vocab];
        nll.push(-(lp[target as usize] as f64));
        ref_nll.push(-(r[target as usize] as f64));
        let k: f64 = r
            .iter()
            .zip(&lp)
            .map(|(a, b)| (*a as f64).exp() * (*a as f64 - *b as f64))
            .sum();
        kld.push(k.max(0.0));
        if argmax(r) == argmax(&lp) {
            agree += 1;
        }
        i += 1;
        Ok(())
    })?;
    let scored_tokens = nll.len();
    let (ppl, err) = perplexity(&nll);
    let (ref_ppl, _) = perplexity(&ref_nll);
    Ok(LanguageQuality {
        perplexity: ppl,
        perplexity_err: err,
        reference_perplexity: ref_ppl,
        kld_mean: kld.iter().sum::<f64>() / scored_tokens.max(1) as f64,
        kld_p99: p99(&mut kld),
        top1_agreement_pct: 100.0 * agree as f64 / scored_tokens.max(1) as f64,
        ctx: chunks.first().map_or(0, |c| c.len()),
        chunks: chunks.len(),
        scored_tokens,
        reference: reference_name.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_cut_like_llama_perplexity() {
        let tokens: Vec<u32> = (10..30).collect();
        let c = chunks(&tokens, 8, 5, Some(1));
        assert_eq!(c.len(), 2, "20 tokens hold two whole chunks of 8");
        assert_eq!(c[0], vec![1, 11, 12, 13, 14, 15, 16, 17]);
        assert_eq!(c[1][0], 1);
        assert_eq!(
            scored(8),
            4..7,
            "the second half, but the last logits predict nothing"
        );
        assert_eq!(chunks(&tokens, 8, 1, None)[0][0], 10);
    }

    #[test]
    fn perplexity_of_a_uniform_guess_is_the_vocabulary_size() {
        let nll = vec![(50.0f64).ln(); 10];
        let (ppl, err) = perplexity(&nll);
        assert!((ppl - 50.0).abs() < 1e-9);
        assert!(err.abs() < 1e-9);
        let lp = log_softmax(&[0.0, 0.0, 0.0, 0.0]);
        assert!((lp[0] as f64 - (0.25f64).ln()).abs() < 1e-6);
        assert_eq!(p99(&mut (1..=100).map(f64::from).collect::<Vec<_>>()), 99.0);
    }
}
