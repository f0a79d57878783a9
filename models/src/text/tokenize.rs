//! Text to token ids through the `tokenizers` crate (pure-Rust build), with padding and truncation
//! set explicitly rather than inherited from `tokenizer.json`.

use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use crate::error::{ModelError, Result};

/// How a batch is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Every sequence padded (and truncated) to exactly this many tokens: the timed shape.
    Fixed(usize),
    /// Padded to the longest sequence of the batch, truncated at this many tokens: for quality.
    Longest(usize),
}

/// A batch of encoded texts: `[batch, tokens]` tensors.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Token ids (u32).
    pub ids: Tensor,
    /// Token type ids (u32).
    pub type_ids: Tensor,
    /// Attention mask (f32, 1 for real tokens, 0 for padding).
    pub mask: Tensor,
}

impl Encoded {
    /// The same batch on `device`.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        Ok(Self {
            ids: self.ids.to_device(device)?,
            type_ids: self.type_ids.to_device(device)?,
            mask: self.mask.to_device(device)?,
        })
    }
}

/// A loaded tokenizer.
pub struct TextTokenizer {
    inner: Tokenizer,
    pad_id: u32,
    pad_token: String,
    origin: String,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let origin = path.display().to_string();
        let inner = Tokenizer::from_file(path).map_err(|e| ModelError::Data {
            source_name: origin.clone(),
            message: format!("not a usable tokenizer.json ({e})"),
        })?;
        let (pad_id, pad_token) = match inner.get_padding() {
            Some(p) => (p.pad_id, p.pad_token.clone()),
            None => match inner.token_to_id("[PAD]") {
                Some(id) => (id, "[PAD]".to_string()),
                None => (0, "[PAD]".to_string()),
            },
        };
        Ok(Self {
            inner,
            pad_id,
            pad_token,
            origin,
        })
    }

    /// Encodes `texts` (with the model's special tokens) into one batch.
    pub fn encode(&mut self, texts: &[&str], padding: Padding) -> Result<Encoded> {
        let (strategy, max_length) = match padding {
            Padding::Fixed(n) => (PaddingStrategy::Fixed(n), n),
            Padding::Longest(n) => (PaddingStrategy::BatchLongest, n),
        };
        if max_length < 2 {
            return Err(ModelError::Invalid(format!(
                "sequence length {max_length} is too short: it must hold [CLS] and [SEP]"
            )));
        }
        let err = |e: tokenizers::Error| ModelError::Data {
            source_name: self.origin.clone(),
            message: format!("tokenizing failed: {e}"),
        };
        self.inner.with_padding(Some(PaddingParams {
            strategy,
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id: self.pad_id,
            pad_type_id: 0,
            pad_token: self.pad_token.clone(),
        }));
        self.inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(err)?;
        let encodings = self.inner.encode_batch(texts.to_vec(), true).map_err(err)?;
        let rows = encodings.len();
        let cols = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(rows * cols);
        let mut type_ids = Vec::with_capacity(rows * cols);
        let mut mask = Vec::with_capacity(rows * cols);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            type_ids.extend_from_slice(e.get_type_ids());
            mask.extend(e.get_attention_mask().iter().map(|&m| m as f32));
        }
        let dev = &Device::Cpu;
        Ok(Encoded {
            ids: Tensor::from_vec(ids, (rows, cols), dev)?,
            type_ids: Tensor::from_vec(type_ids, (rows, cols), dev)?,
            mask: Tensor::from_vec(mask, (rows, cols), dev)?,
        })
    }
}
