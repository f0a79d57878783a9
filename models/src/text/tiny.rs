//! A tiny BERT checkpoint with random weights and a small WordPiece vocabulary, written in the
//! Hugging Face layout: for tests and examples that exercise every technique in seconds without
//! fetching a model.

use std::path::Path;

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::Tokenizer;

use crate::error::{ModelError, Result};
use crate::text::bert::random_bert;
use crate::text::config::BertConfig;

/// Words of the tiny vocabulary (after the special tokens).
pub const TINY_WORDS: &[&str] = &[
    "the", "a", "to", "and", "of", "you", "win", "free", "money", "prize", "click", "now", "offer",
    "meeting", "report", "code", "review", "lunch", "team", "project", "update", "please", "see",
    "attached", "cash", "cheap", "deal", "tomorrow", "thanks", "build", "fast", "model", "small",
    "!", ".", ",", "?", "##s", "##ing", "##ed",
];

/// The configuration of the tiny BERT: 2 layers, hidden 64 in 4 heads, feed-forward 256 (so the
/// down projection takes 256-block k-quants and the rest falls back, as in MiniLM).
pub fn tiny_config() -> BertConfig {
    BertConfig {
        vocab_size: 5 + TINY_WORDS.len(),
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 256,
        max_position_embeddings: 64,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: "gelu".into(),
    }
}

/// A BERT WordPiece tokenizer over [`TINY_WORDS`]; writes its `vocab.txt` into `dir`.
pub fn tiny_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let vocab_path = dir.join("vocab.txt");
    let words: Vec<&str> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .chain(TINY_WORDS)
        .copied()
        .collect();
    std::fs::write(&vocab_path, words.join("\n") + "\n")
        .map_err(|e| ModelError::io(&vocab_path, e))?;
    let model = WordPiece::from_file(&vocab_path.display().to_string())
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| ModelError::Invalid(format!("tiny tokenizer: {e}")))?;
    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(BertNormalizer::default()));
    tok.with_pre_tokenizer(Some(BertPreTokenizer));
    tok.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), 3),
        ("[CLS]".into(), 2),
    )));
    Ok(tok)
}

/// Writes `config.json`, `tokenizer.json` and `model.safetensors` of a random tiny BERT to `dir`.
pub fn write_tiny_checkpoint(dir: &Path, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let config = tiny_config();
    let json =
        serde_json::to_string_pretty(&config).map_err(|e| ModelError::Invalid(e.to_string()))?;
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, json).map_err(|e| ModelError::io(&config_path, e))?;
    let tok_path = dir.join("tokenizer.json");
    tiny_tokenizer(dir)?
        .save(&tok_path, false)
        .map_err(|e| ModelError::Invalid(format!("{}: {e}", tok_path.display())))?;
    let bert = random_bert(&config, seed)?;
    candle_core::safetensors::save(&bert.to_tensors()?, dir.join("model.safetensors"))?;
    Ok(())
}
