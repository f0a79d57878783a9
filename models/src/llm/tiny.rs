//! A tiny random llama GGUF file, written on demand (by the tests, and by anyone who wants to run
//! the language-model chain without fetching SmolLM2): byte-level BPE vocabulary with a few
//! merges, two blocks, grouped-query attention, matrices in Q4_1 and token embeddings in Q8_0 as
//! SmolLM2 ships them.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{ModelError, Result};

/// The shape of the tiny model.
#[derive(Debug, Clone, Copy)]
pub struct TinyShape {
    /// Blocks.
    pub blocks: usize,
    /// Width (a multiple of 32).
    pub width: usize,
    /// Feed-forward width (a multiple of 32).
    pub ffn: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
}

/// Two blocks, width 64, feed-forward 256, four query heads over two key/value heads.
pub const TINY: TinyShape = TinyShape {
    blocks: 2,
    width: 64,
    ffn: 256,
    heads: 4,
    kv_heads: 2,
};

/// Merges of the tiny vocabulary (byte-level symbols: `Ġ` is a space).
pub const TINY_MERGES: &[(&str, &str)] = &[("t", "h"), ("th", "e"), ("Ġ", "the"), ("i", "n")];

/// What to leave out or change, to test the errors of broken files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breakage {
    /// Omit this tensor.
    pub missing_tensor: Option<&'static str>,
    /// Write this architecture instead of llama.
    pub architecture: Option<&'static str>,
}

/// The vocabulary: the 256 byte-level symbols in byte order, the merged tokens, then a control
/// token `<|endoftext|>`.
pub fn tiny_tokens() -> Vec<String> {
    let mut tokens: Vec<String> = (0..=255u8).map(byte_symbol).collect();
    tokens.extend(TINY_MERGES.iter().map(|(a, b)| format!("{a}{b}")));
    tokens.push("<|endoftext|>".into());
    tokens
}

/// GPT-2's printable symbol of a byte.
fn byte_symbol(b: u8) -> String {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable(b) {
        return char::from(b).to_string();
    }
    let shifted = (0..=255u8).filter(|x| !printable(*x)).position(|x| x == b);
    char::from_u32(256 + shifted.unwrap_or(0) as u32)
        .unwrap_or('?')
        .to_string()
}

fn random(rng: &mut ChaCha8Rng, dims: &[usize], scale: f32) -> Result<Tensor> {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-scale..scale)).collect();
    Ok(Tensor::from_vec(v, dims, &Device::Cpu)?)
}

/// Writes a held-out text for the tiny model to `path`: 900 words of its vocabulary in a fixed
/// order (enough for the quality chunks and a prompt).
pub fn write_tiny_text(path: &Path) -> Result<()> {
    let words = ["the", "then", "in", "thin", "2024", "ink", "the end."];
    let body: Vec<&str> = (0..900)
        .map(|i| words[(i * 7 + i / 3) % words.len()])
        .collect();
    std::fs::write(path, body.join(" ")).map_err(|e| ModelError::io(path, e))
}

/// Writes the tiny model to `path` (seeded: the same bytes every time).
pub fn write_tiny_gguf(path: &Path, shape: TinyShape, breakage: Breakage) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let tokens = tiny_tokens();
    let vocab = tokens.len();
    let (w, f) = (shape.width, shape.ffn);
    let kv = shape.kv_heads * (w / shape.heads);
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut add = |name: String, t: Tensor, dtype: GgmlDType| -> Result<()> {
        tensors.push((name, QTensor::quantize(&t, dtype)?));
        Ok(())
    };
    add(
        "token_embd.weight".into(),
        random(&mut rng, &[vocab, w], 1.0)?,
        GgmlDType::Q8_0,
    )?;
    add(
        "output_norm.weight".into(),
        (random(&mut rng, &[w], 0.1)? + 1.0)?,
        GgmlDType::F32,
    )?;
    let scale = 1.0 / (w as f32).sqrt();
    for i in 0..shape.blocks {
        let p = |t: &str| format!("blk.{i}.{t}.weight");
        add(
            p("attn_norm"),
            (random(&mut rng, &[w], 0.1)? + 1.0)?,
            GgmlDType::F32,
        )?;
        add(
            p("attn_q"),
            random(&mut rng, &[w, w], scale)?,
            GgmlDType::Q4_1,
        )?;
        add(
            p("attn_k"),
            random(&mut rng, &[kv, w], scale)?,
            GgmlDType::Q4_1,
        )?;
        add(
            p("attn_v"),
            random(&mut rng, &[kv, w], scale)?,
            GgmlDType::Q4_1,
        )?;
        add(
            p("attn_output"),
            random(&mut rng, &[w, w], scale)?,
            GgmlDType::Q4_1,
        )?;
        add(
            p("ffn_norm"),
            (random(&mut rng, &[w], 0.1)? + 1.0)?,
            GgmlDType::F32,
        )?;
        add(
            p("ffn_gate"),
            random(&mut rng, &[f, w], scale)?,
            GgmlDType::Q4_1,
        )?;
        add(
            p("ffn_up"),
            random(&mut rng, &[f, w], scale)?,
            GgmlDType::Q4_1,
        )?;
        add(
            p("ffn_down"),
            random(&mut rng, &[w, f], 1.0 / (f as f32).sqrt())?,
            GgmlDType::Q4_1,
        )?;
    }
    tensors.retain(|(n, _)| Some(n.as_str()) != breakage.missing_tensor);
    let arch = breakage.architecture.unwrap_or("llama");
    let mut token_types = vec![Value::I32(1); vocab];
    token_types[vocab - 1] = Value::I32(3);
    let metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("llama.block_count".into(), Value::U32(shape.blocks as u32)),
        ("llama.embedding_length".into(), Value::U32(w as u32)),
        ("llama.feed_forward_length".into(), Value::U32(f as u32)),
        (
            "llama.attention.head_count".into(),
            Value::U32(shape.heads as u32),
        ),
        (
            "llama.attention.head_count_kv".into(),
            Value::U32(shape.kv_heads as u32),
        ),
        ("llama.rope.freq_base".into(), Value::F32(10_000.0)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(1e-5),
        ),
        ("llama.context_length".into(), Value::U32(2048)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(token_types),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(
                TINY_MERGES
                    .iter()
                    .map(|(a, b)| Value::String(format!("{a} {b}")))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.bos_token_id".into(),
            Value::U32((vocab - 1) as u32),
        ),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
    ];
    let meta: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut file = std::fs::File::create(path).map_err(|e| ModelError::io(path, e))?;
    gguf_file::write(&mut file, &meta, &refs)?;
    Ok(())
}
