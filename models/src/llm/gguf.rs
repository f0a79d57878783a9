//! Reads a llama-architecture GGUF file: the model's shape from its metadata, every tensor
//! dequantized to f32 (the reference), the shipped blocks of each tensor, and the tokenizer's
//! vocabulary. Every error names the file and what is wrong with it (truncated, another
//! architecture, a missing key or tensor).

use std::collections::HashMap;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::fetch::data_err;

/// The shape of a llama-architecture model, from the GGUF metadata.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LlamaConfig {
    /// Transformer blocks.
    pub blocks: usize,
    /// Width of the hidden state.
    pub width: usize,
    /// Width of the feed-forward layer.
    pub ffn_width: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention: each serves `heads / kv_heads` query heads).
    pub kv_heads: usize,
    /// RoPE frequency base.
    pub rope_base: f32,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Vocabulary size.
    pub vocab: usize,
    /// Longest context the model was trained for.
    pub context_length: usize,
}

impl LlamaConfig {
    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }

    /// Width of the keys (and of the values): `kv_heads * head_dim`.
    pub fn kv_width(&self) -> usize {
        self.kv_heads * self.head_dim()
    }
}

/// The tokenizer as the GGUF metadata describes it.
#[derive(Debug, Clone)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model` (`gpt2` for byte-level BPE).
    pub model: String,
    /// `tokenizer.ggml.pre` (`smollm`, ...), when given.
    pub pre: Option<String>,
    /// Every token's text, by id.
    pub tokens: Vec<String>,
    /// Each token's type (1 normal, 3 control, ...), by id; empty when the file has none.
    pub token_types: Vec<i32>,
    /// The merges, in priority order (`"a b"`).
    pub merges: Vec<String>,
    /// Begin-of-sequence token, when given.
    pub bos: Option<u32>,
    /// Whether a begin-of-sequence token is added to every text.
    pub add_bos: bool,
}

/// A GGUF file read whole: metadata, shape, tokenizer and the tensors as stored.
pub struct GgufModel {
    /// The shape.
    pub config: LlamaConfig,
    /// The tokenizer.
    pub vocab: GgufVocab,
    /// Every tensor as stored (its GGML type and bytes), by GGUF name.
    pub tensors: HashMap<String, QTensor>,
}

/// The architecture this reader understands.
pub const ARCHITECTURE: &str = "llama";

/// The GGUF names of block `i`'s tensors, in the order the model uses them.
pub fn block_tensor_names(i: usize) -> [String; 9] {
    [
        "attn_norm",
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_norm",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ]
    .map(|t| format!("blk.{i}.{t}.weight"))
}

fn origin(path: &Path) -> String {
    path.display().to_string()
}

fn key<'a>(meta: &'a HashMap<String, Value>, name: &str, path: &Path) -> Result<&'a Value> {
    meta.get(name).ok_or_else(|| {
        data_err(
            origin(path),
            format!("the GGUF metadata has no key {name:?}; is this a complete llama model file?"),
        )
    })
}

fn usize_key(meta: &HashMap<String, Value>, name: &str, path: &Path) -> Result<usize> {
    let v = key(meta, name, path)?;
    v.to_u64()
        .map(|n| n as usize)
        .or_else(|_| v.to_u32().map(|n| n as usize))
        .or_else(|_| v.to_i32().map(|n| n.max(0) as usize))
        .map_err(|e| data_err(origin(path), format!("metadata key {name:?}: {e}")))
}

fn f32_key(meta: &HashMap<String, Value>, name: &str, path: &Path) -> Result<f32> {
    key(meta, name, path)?
        .to_f32()
        .map_err(|e| data_err(origin(path), format!("metadata key {name:?}: {e}")))
}

fn strings(meta: &HashMap<String, Value>, name: &str, path: &Path) -> Result<Vec<String>> {
    key(meta, name, path)?
        .to_vec()
        .and_then(|items| {
            items
                .iter()
                .map(|v| v.to_string().cloned())
                .collect::<candle_core::Result<Vec<_>>>()
        })
        .map_err(|e| data_err(origin(path), format!("metadata key {name:?}: {e}")))
}

/// The model's shape from the metadata; the architecture must be llama.
pub fn read_config(meta: &HashMap<String, Value>, path: &Path) -> Result<LlamaConfig> {
    let arch = key(meta, "general.architecture", path)?
        .to_string()
        .map_err(|e| data_err(origin(path), format!("general.architecture: {e}")))?;
    if arch != ARCHITECTURE {
        return Err(data_err(
            origin(path),
            format!(
                "architecture {arch:?} is not supported; slimbench's language-model family reads \
                 {ARCHITECTURE:?} GGUF files"
            ),
        ));
    }
    let p = |k: &str| format!("{ARCHITECTURE}.{k}");
    let vocab = match meta.get(&p("vocab_size")) {
        Some(_) => usize_key(meta, &p("vocab_size"), path)?,
        None => strings(meta, "tokenizer.ggml.tokens", path)?.len(),
    };
    let config = LlamaConfig {
        blocks: usize_key(meta, &p("block_count"), path)?,
        width: usize_key(meta, &p("embedding_length"), path)?,
        ffn_width: usize_key(meta, &p("feed_forward_length"), path)?,
        heads: usize_key(meta, &p("attention.head_count"), path)?,
        kv_heads: usize_key(meta, &p("attention.head_count_kv"), path)?,
        rope_base: match meta.get(&p("rope.freq_base")) {
            Some(_) => f32_key(meta, &p("rope.freq_base"), path)?,
            None => 10_000.0,
        },
        rms_eps: f32_key(meta, &p("attention.layer_norm_rms_epsilon"), path)?,
        vocab,
        context_length: usize_key(meta, &p("context_length"), path)?,
    };
    if config.heads == 0
        || config.kv_heads == 0
        || !config.width.is_multiple_of(config.heads)
        || !config.heads.is_multiple_of(config.kv_heads)
        || !config.head_dim().is_multiple_of(2)
    {
        return Err(data_err(
            origin(path),
            format!(
                "inconsistent shape: width {} over {} heads and {} key/value heads (each must divide the one before, into an even head width)",
                config.width, config.heads, config.kv_heads
            ),
        ));
    }
    Ok(config)
}

/// The tokenizer's vocabulary from the metadata.
pub fn read_vocab(meta: &HashMap<String, Value>, path: &Path) -> Result<GgufVocab> {
    let model = key(meta, "tokenizer.ggml.model", path)?
        .to_string()
        .map_err(|e| data_err(origin(path), format!("tokenizer.ggml.model: {e}")))?
        .clone();
    let token_types = match meta.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .and_then(|items| items.iter().map(|t| t.to_i32()).collect())
            .map_err(|e| data_err(origin(path), format!("tokenizer.ggml.token_type: {e}")))?,
        None => Vec::new(),
    };
    Ok(GgufVocab {
        model,
        pre: meta
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok().cloned()),
        tokens: strings(meta, "tokenizer.ggml.tokens", path)?,
        token_types,
        merges: strings(meta, "tokenizer.ggml.merges", path)?,
        bos: meta
            .get("tokenizer.ggml.bos_token_id")
            .and_then(|v| v.to_u32().ok()),
        add_bos: meta
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false),
    })
}

/// The names of every tensor a llama model of `config` needs (`output.weight` is optional: the
/// token embeddings are tied to the output when it is absent).
pub fn required_tensors(config: &LlamaConfig) -> Vec<String> {
    let mut names = vec!["token_embd.weight".to_string(), "output_norm.weight".into()];
    for i in 0..config.blocks {
        names.extend(block_tensor_names(i));
    }
    names
}

fn read_from<R: Read + Seek>(reader: &mut R, path: &Path) -> Result<GgufModel> {
    let content = Content::read(reader).map_err(|e| {
        data_err(
            origin(path),
            format!("not a readable GGUF file ({e}); fetch it again (slimbench fetch smollm2)"),
        )
    })?;
    let config = read_config(&content.metadata, path)?;
    let vocab = read_vocab(&content.metadata, path)?;
    let mut tensors = HashMap::new();
    let mut names = required_tensors(&config);
    if content.tensor_infos.contains_key("output.weight") {
        names.push("output.weight".into());
    }
    for name in names {
        if !content.tensor_infos.contains_key(&name) {
            return Err(data_err(
                origin(path),
                format!("tensor {name:?} is missing; the file is not a complete llama model"),
            ));
        }
        let q = content
            .tensor(reader, &name, &Device::Cpu)
            .map_err(|e| data_err(origin(path), format!("tensor {name:?}: {e}")))?;
        tensors.insert(name, q);
    }
    Ok(GgufModel {
        config,
        vocab,
        tensors,
    })
}

/// Reads a GGUF file already in memory; `path` names it in errors.
pub fn read_bytes(bytes: &[u8], path: &Path) -> Result<GgufModel> {
    read_from(&mut std::io::Cursor::new(bytes), path)
}

/// Reads the GGUF file at `path`.
pub fn read(path: &Path) -> Result<GgufModel> {
    let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    read_from(&mut BufReader::new(file), path)
}

impl GgufModel {
    /// Tensor `name` dequantized to f32 (row-major, GGUF's dimensions reversed: `out x in` for a
    /// matrix).
    pub fn f32(&self, name: &str, path: &Path) -> Result<Tensor> {
        let q = self
            .tensors
            .get(name)
            .ok_or_else(|| data_err(origin(path), format!("tensor {name:?} is missing")))?;
        Ok(q.dequantize(&Device::Cpu)?)
    }

    /// Checks that tensor `name` has `dims` (row-major).
    pub fn check_shape(&self, name: &str, dims: &[usize], path: &Path) -> Result<()> {
        let q = self
            .tensors
            .get(name)
            .ok_or_else(|| data_err(origin(path), format!("tensor {name:?} is missing")))?;
        if q.shape().dims() != dims {
            return Err(data_err(
                origin(path),
                format!(
                    "tensor {name:?} has shape {:?}, the metadata's shape needs {dims:?}",
                    q.shape().dims()
                ),
            ));
        }
        Ok(())
    }
}
