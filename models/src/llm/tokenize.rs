//! The language model's tokenizer, built with the `tokenizers` crate from the GGUF metadata
//! (GPT-2-style byte-level BPE: the vocabulary, the merges and the pre-tokenizer named in the
//! file), so that its ids equal llama.cpp's on the same text.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{ModelError, Result};
use crate::fetch::data_err;
use crate::llm::gguf::GgufVocab;

/// GGUF token types that are matched whole, before the BPE (control and user-defined tokens).
const SPECIAL_TOKEN_TYPES: [i32; 2] = [3, 4];

/// Pre-tokenizers this reader knows, as llama.cpp names them, with what each splits.
pub const KNOWN_PRE_TOKENIZERS: &[&str] = &["smollm", "gpt2", "default"];

/// A byte-level BPE tokenizer from the GGUF metadata.
pub struct LlmTokenizer {
    inner: Tokenizer,
    bos: Option<u32>,
}

impl LlmTokenizer {
    /// Builds the tokenizer of `vocab`; `origin` names the file in errors.
    pub fn from_vocab(vocab: &GgufVocab, origin: &str) -> Result<Self> {
        if vocab.model != "gpt2" {
            return Err(data_err(
                origin,
                format!(
                    "tokenizer model {:?} is not supported (slimbench reads byte-level BPE, `gpt2`)",
                    vocab.model
                ),
            ));
        }
        let pre = vocab.pre.as_deref().unwrap_or("default");
        // llama.cpp's `smollm` splits every digit apart, then applies GPT-2's expression.
        let byte_level = ByteLevel::new(false, true, true);
        let pre_tokenizer: PreTokenizerWrapper = match pre {
            "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
            "gpt2" | "default" => byte_level.into(),
            other => {
                return Err(data_err(
                    origin,
                    format!(
                        "pre-tokenizer {other:?} is not supported; known: {}",
                        KNOWN_PRE_TOKENIZERS.join(", ")
                    ),
                ))
            }
        };
        let ids: Vocab = vocab
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges = vocab
            .merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| data_err(origin, format!("merge {m:?} is not two tokens")))
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(ids, merges)
            .build()
            .map_err(|e| data_err(origin, format!("tokenizer: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let specials: Vec<AddedToken> = vocab
            .tokens
            .iter()
            .zip(&vocab.token_types)
            .filter(|(_, ty)| SPECIAL_TOKEN_TYPES.contains(ty))
            .map(|(t, _)| AddedToken::from(t.clone(), true))
            .collect();
        inner.add_special_tokens(&specials);
        Ok(Self {
            inner,
            bos: vocab.bos.filter(|_| vocab.add_bos),
        })
    }

    /// The token ids of `text` (with the begin-of-sequence token where the model adds one).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| ModelError::Invalid(format!("tokenizing: {e}")))?;
        let mut ids: Vec<u32> = self.bos.into_iter().collect();
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| ModelError::Invalid(format!("detokenizing: {e}")))
    }
}
