//! The `config.json` of a BERT-family checkpoint: the sizes slimbench's BERT forward needs.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// The fields of a Hugging Face BERT `config.json` that the forward pass uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Transformer layers in the checkpoint.
    pub num_hidden_layers: usize,
    /// Attention heads per layer (the head width is `hidden_size / num_attention_heads`).
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Longest sequence the position embeddings cover.
    pub max_position_embeddings: usize,
    /// Token type (segment) vocabulary.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// Layer norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Activation of the feed-forward layer; only `gelu` (exact, erf) is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

impl BertConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Parses `text` (the contents of `origin`) and checks the sizes are usable.
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        let bad = |message: String| ModelError::Data {
            source_name: origin.display().to_string(),
            message,
        };
        let config: BertConfig = serde_json::from_str(text).map_err(|e| {
            bad(format!(
                "not a usable BERT config.json ({e}); it needs vocab_size, hidden_size, \
                 num_hidden_layers, num_attention_heads, intermediate_size and max_position_embeddings"
            ))
        })?;
        if config.hidden_size == 0
            || config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(bad(format!(
                "hidden_size {} must be a positive multiple of num_attention_heads {}",
                config.hidden_size, config.num_attention_heads
            )));
        }
        if config.hidden_act != "gelu" {
            return Err(bad(format!(
                "hidden_act {:?} is not supported; slimbench's BERT runs the exact \"gelu\"",
                config.hidden_act
            )));
        }
        Ok(config)
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::parse(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_or_unsupported_configs_name_the_file() {
        let p = Path::new("/m/config.json");
        let e = BertConfig::parse("{\"hidden_size\": 384", p)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/m/config.json: not a usable BERT config.json"),
            "{e}"
        );
        let odd = r#"{"vocab_size":10,"hidden_size":10,"num_hidden_layers":1,"num_attention_heads":3,
            "intermediate_size":4,"max_position_embeddings":8}"#;
        let e = BertConfig::parse(odd, p).unwrap_err().to_string();
        assert!(e.contains("multiple of num_attention_heads 3"), "{e}");
    }
}
