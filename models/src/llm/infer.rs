//! The llama forward pass on the CPU in slimbench's own buffers, with a key/value cache: a prompt
//! of any length (prefill) or one token (a decode step) at the cache's current position.
//! RMSNorm, rotary position embeddings (GGUF's interleaved pairs), grouped-query causal attention
//! read in place from the fused projection and the cache, SwiGLU; every Linear through
//! `row_linear` (slimbench's kernels for f32, int8 and the block formats).

use rayon::prelude::*;

use candle_core::quantized::k_quants::{BlockQ8_0, GgmlType};

use crate::error::{ModelError, Result};
use crate::kernels::elementwise::{exp_approx, softmax_rows_in_place};
use crate::kernels::f32_tile::{self, Weights};
use crate::kernels::qgemm::ONE_ROW_MAX_ROWS;
use crate::kernels::sgemm::{matmul_into, matmul_into_ptr, MatRef, Threads};
use crate::kernels::Isa;
use crate::llm::gguf::LlamaConfig;
use crate::llm::model::Llama;
use crate::row_linear::{linear_into, with_f32_slice};

/// How a cache keeps its keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvStorage {
    /// Plain f32.
    F32,
    /// GGML's `q8_0` blocks (32 values and an f16 scale: 34 bytes), as llama.cpp's `-ctk q8_0
    /// -ctv q8_0`; each block's rows are dequantized into one shared buffer when read.
    Q8_0,
}

impl KvStorage {
    /// Bytes one value takes.
    fn bytes_per_value(self) -> f64 {
        match self {
            KvStorage::F32 => 4.0,
            KvStorage::Q8_0 => std::mem::size_of::<BlockQ8_0>() as f64 / Q8_0_BLOCK as f64,
        }
    }

    /// The name in records (`f32`, `q8_0`).
    pub fn name(self) -> &'static str {
        match self {
            KvStorage::F32 => "f32",
            KvStorage::Q8_0 => "q8_0",
        }
    }
}

/// Values in one `q8_0` block.
const Q8_0_BLOCK: usize = BlockQ8_0::BLCK_SIZE;

/// Each block's key (and value) width: its key/value heads times the head width.
fn kv_widths(model: &Llama) -> Vec<usize> {
    let hd = model.config.head_dim();
    model.blocks.iter().map(|b| b.kv_heads(hd) * hd).collect()
}

/// One block's keys and values by token (`[capacity][kv_width]`).
enum BlockStore {
    F32 {
        keys: Vec<f32>,
        values: Vec<f32>,
    },
    Q8_0 {
        keys: Vec<BlockQ8_0>,
        values: Vec<BlockQ8_0>,
    },
}

/// The keys and values of every block for the tokens seen so far, and the rotary tables.
pub struct KvCache {
    stores: Vec<BlockStore>,
    widths: Vec<usize>,
    /// Dequantized keys and values of the block being read (`q8_0` storage only).
    scratch: (Vec<f32>, Vec<f32>),
    len: usize,
    capacity: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
}

impl KvCache {
    /// An empty f32 cache for up to `capacity` tokens of `model`.
    pub fn new(model: &Llama, capacity: usize) -> Self {
        Self::from_widths(model, capacity, kv_widths(model), KvStorage::F32)
    }

    /// An empty cache for up to `capacity` tokens of `model` in `storage`; `q8_0` needs every
    /// block's key/value width to be a multiple of its 32-value blocks.
    pub fn with_storage(model: &Llama, capacity: usize, storage: KvStorage) -> Result<Self> {
        let widths = kv_widths(model);
        if storage == KvStorage::Q8_0 {
            if let Some((i, w)) = widths
                .iter()
                .enumerate()
                .find(|(_, w)| *w % Q8_0_BLOCK != 0)
            {
                return Err(ModelError::NotApplicable(format!(
                    "a q8_0 key/value cache needs widths that are multiples of {Q8_0_BLOCK}; block {i} has {w}"
                )));
            }
        }
        Ok(Self::from_widths(model, capacity, widths, storage))
    }

    /// The cache of blocks `widths` wide in `storage` (the widths checked against it).
    fn from_widths(model: &Llama, capacity: usize, widths: Vec<usize>, storage: KvStorage) -> Self {
        let stores = widths
            .iter()
            .map(|w| match storage {
                KvStorage::F32 => BlockStore::F32 {
                    keys: vec![0f32; capacity * w],
                    values: vec![0f32; capacity * w],
                },
                KvStorage::Q8_0 => BlockStore::Q8_0 {
                    keys: vec![BlockQ8_0::zeros(); capacity * w / Q8_0_BLOCK],
                    values: vec![BlockQ8_0::zeros(); capacity * w / Q8_0_BLOCK],
                },
            })
            .collect();
        let scratch_len = match storage {
            KvStorage::F32 => 0,
            KvStorage::Q8_0 => capacity * widths.iter().copied().max().unwrap_or(0),
        };
        let half = model.config.head_dim() / 2;
        let (cos, sin) = rope_tables(&model.config, capacity);
        Self {
            stores,
            widths,
            scratch: (vec![0f32; scratch_len], vec![0f32; scratch_len]),
            len: 0,
            capacity,
            cos,
            sin,
            half,
        }
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no token is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every token after the first `len` (the next token goes to position `len`).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Bytes of keys and values that `tokens` tokens of `model` take in `storage`, on any
    /// device.
    pub fn bytes_for(model: &Llama, tokens: usize, storage: KvStorage) -> usize {
        let values: usize = kv_widths(model).iter().map(|w| 2 * w * tokens).sum();
        (values as f64 * storage.bytes_per_value()).round() as usize
    }

    /// Stores the key and value rows of the token at `pos` in block `block`.
    fn write(&mut self, block: usize, pos: usize, key: &[f32], value: &[f32]) {
        let w = self.widths[block];
        match &mut self.stores[block] {
            BlockStore::F32 { keys, values } => {
                keys[pos * w..(pos + 1) * w].copy_from_slice(key);
                values[pos * w..(pos + 1) * w].copy_from_slice(value);
            }
            BlockStore::Q8_0 { keys, values } => {
                let n = w / Q8_0_BLOCK;
                BlockQ8_0::from_float(key, &mut keys[pos * n..(pos + 1) * n]);
                BlockQ8_0::from_float(value, &mut values[pos * n..(pos + 1) * n]);
            }
        }
    }

    /// The first `len` key and value rows of block `block`, as f32 (`[len][kv_width]` each).
    fn read(&mut self, block: usize, len: usize) -> (&[f32], &[f32]) {
        let w = self.widths[block];
        match &self.stores[block] {
            BlockStore::F32 { keys, values } => (&keys[..len * w], &values[..len * w]),
            BlockStore::Q8_0 { keys, values } => {
                let n = w / Q8_0_BLOCK;
                let (k, v) = (
                    &mut self.scratch.0[..len * w],
                    &mut self.scratch.1[..len * w],
                );
                BlockQ8_0::to_float(&keys[..len * n], k);
                BlockQ8_0::to_float(&values[..len * n], v);
                (k, v)
            }
        }
    }

    /// Rotates each `head_dim`-wide head of `row` (token at `pos`) in interleaved pairs.
    fn rotate(&self, row: &mut [f32], pos: usize) {
        let (cos, sin) = (
            &self.cos[pos * self.half..(pos + 1) * self.half],
            &self.sin[pos * self.half..(pos + 1) * self.half],
        );
        for head in row.chunks_exact_mut(2 * self.half) {
            for ((pair, c), s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * c - b * s;
                pair[1] = a * s + b * c;
            }
        }
    }
}

/// The rotary tables `(cos, sin)` of positions `0..capacity`, `head_dim / 2` angles each
/// (position times `rope_base^(-2i / head_dim)`).
pub(crate) fn rope_tables(config: &LlamaConfig, capacity: usize) -> (Vec<f32>, Vec<f32>) {
    let hd = config.head_dim();
    let half = hd / 2;
    let mut cos = Vec::with_capacity(capacity * half);
    let mut sin = Vec::with_capacity(capacity * half);
    for pos in 0..capacity {
        for i in 0..half {
            let freq = config.rope_base.powf(-((2 * i) as f32) / hd as f32);
            let angle = pos as f32 * freq;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    (cos, sin)
}

/// Checks that `tokens` are at least one, fit a cache of `capacity` holding `start`, and lie
/// inside the vocabulary.
pub(crate) fn check_tokens(
    tokens: &[u32],
    start: usize,
    capacity: usize,
    vocab: usize,
) -> Result<()> {
    let rows = tokens.len();
    if rows == 0 {
        return Err(ModelError::Invalid(
            "a forward pass needs at least one token".into(),
        ));
    }
    if start + rows > capacity {
        return Err(ModelError::Invalid(format!(
            "{rows} tokens do not fit the key/value cache of {capacity} (holding {start})"
        )));
    }
    if let Some(t) = tokens.iter().find(|t| **t as usize >= vocab) {
        return Err(ModelError::Invalid(format!(
            "token id {t} is outside the vocabulary of {vocab}"
        )));
    }
    Ok(())
}

/// Which rows of logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's (generation).
    Last,
    /// Every token's (perplexity).
    All,
}

#[derive(Default)]
struct Buffers {
    normed: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    gate_up: Vec<f32>,
    act: Vec<f32>,
    scores: Vec<f32>,
}

fn rms_norm_into(x: &[f32], weight: &[f32], eps: f32, out: &mut Vec<f32>) {
    let w = weight.len();
    out.resize(x.len(), 0.0);
    for (row, dst) in x.chunks_exact(w).zip(out.chunks_exact_mut(w)) {
        let mean_sq = row.iter().map(|v| v * v).sum::<f32>() / w as f32;
        let inv = 1.0 / (mean_sq + eps).sqrt();
        for ((d, v), g) in dst.iter_mut().zip(row).zip(weight) {
            *d = v * inv * g;
        }
    }
}

/// `silu(gate) * up` for each row of `gate_up` (`2 ffn` wide: gate then up) into `act`.
fn swiglu(gate_up: &[f32], ffn: usize, act: &mut Vec<f32>) {
    act.resize(gate_up.len() / 2, 0.0);
    for (row, dst) in gate_up.chunks_exact(2 * ffn).zip(act.chunks_exact_mut(ffn)) {
        let (gate, up) = row.split_at(ffn);
        for ((d, g), u) in dst.iter_mut().zip(gate).zip(up) {
            *d = g / (1.0 + exp_approx(-g)) * u;
        }
    }
}

/// The shape of one block's attention.
#[derive(Clone, Copy)]
struct Heads {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

/// Causal attention of `rows` new tokens (at positions `start..start + rows`) over the first
/// `start + rows` of a block's cached `(keys, values)`; queries read in place from `qkv`.
fn attention(
    qkv: &[f32],
    rows: usize,
    start: usize,
    (keys, values): (&[f32], &[f32]),
    shape: Heads,
    context: &mut Vec<f32>,
    scores: &mut Vec<f32>,
) {
    let Heads {
        heads,
        kv_heads,
        head_dim: hd,
    } = shape;
    let q_width = heads * hd;
    let kv_width = kv_heads * hd;
    let stride = q_width + 2 * kv_width;
    let keys_len = start + rows;
    let group = heads / kv_heads;
    context.resize(rows * q_width, 0.0);
    scores.resize(heads * rows * keys_len, 0.0);
    let scale = 1.0 / (hd as f32).sqrt();
    let context_addr = context.as_mut_ptr() as usize;
    let zeros = vec![0f32; keys_len];
    let isa = Isa::get();
    scores
        .par_chunks_mut(rows * keys_len)
        .enumerate()
        .for_each(|(h, s)| {
            let g = h / group;
            let q = MatRef {
                data: &qkv[h * hd..],
                rows,
                cols: hd,
                row_stride: stride,
                col_stride: 1,
            };
            let k = MatRef {
                data: &keys[g * hd..],
                rows: keys_len,
                cols: hd,
                row_stride: kv_width,
                col_stride: 1,
            };
            // Prefill's products on the AVX-512 tiles; a decode step's single row (and other
            // paths) on the gemm crate, which reads the keys in place without packing them.
            let tiles = rows > ONE_ROW_MAX_ROWS;
            let keys_in = Weights::Channels {
                data: k.data,
                stride: kv_width,
            };
            let scores_on_tiles = tiles
                // SAFETY: `s` holds `rows x keys_len` and is this task's own.
                && unsafe {
                    f32_tile::product_into(isa, q, keys_in, keys_len, scale, s.as_mut_ptr(), keys_len)
                };
            if !scores_on_tiles {
                matmul_into(s, keys_len, q, k.t(), scale, false, Threads::One);
            }
            for (t, row) in s.chunks_exact_mut(keys_len).enumerate() {
                let visible = start + t + 1;
                softmax_rows_in_place(&mut row[..visible], visible, &zeros[..visible]);
                row[visible..].fill(0.0);
            }
            let v = MatRef {
                data: &values[g * hd..],
                rows: keys_len,
                cols: hd,
                row_stride: kv_width,
                col_stride: 1,
            };
            let context_at = (context_addr as *mut f32).wrapping_add(h * hd);
            let probabilities = MatRef::new(s, rows, keys_len);
            let values_in = Weights::Inputs {
                data: v.data,
                stride: kv_width,
            };
            // SAFETY: this task alone writes columns h*hd..(h+1)*hd of the `rows` rows of
            // `context`, which was sized above to hold them.
            unsafe {
                if !(tiles
                    && f32_tile::product_into(
                        isa,
                        probabilities,
                        values_in,
                        hd,
                        1.0,
                        context_at,
                        q_width,
                    ))
                {
                    matmul_into_ptr(
                        context_at,
                        q_width,
                        probabilities,
                        v,
                        1.0,
                        false,
                        Threads::One,
                    );
                }
            }
        });
}

/// Runs `tokens` through `model` at the cache's position, appending their keys and values, and
/// returns the logits of the last token or of every token (`rows x vocab`).
///
/// The pass runs on a thread of rayon's pool, so that its many small parallel products (a decode
/// step has over a hundred) hand work to the other threads by work stealing, instead of putting
/// the calling thread to sleep and waking it for each.
pub fn forward(
    model: &Llama,
    tokens: &[u32],
    cache: &mut KvCache,
    logits: Logits,
) -> Result<Vec<f32>> {
    crate::kernels::on_pool(|| forward_here(model, tokens, cache, logits, None))
}

/// How much each block changes the hidden state of `tokens` (from an empty cache): one minus the
/// mean cosine between each token's state before and after the block (ShortGPT's Block
/// Influence). The blocks with the least influence are the ones whose removal changes the
/// hidden state least.
pub fn block_influence(model: &Llama, tokens: &[u32]) -> Result<Vec<f64>> {
    let width = model.config.width;
    let mut influence = vec![0f64; model.blocks.len()];
    let mut observe = |i: usize, before: &[f32], after: &[f32]| {
        let rows = before.len() / width;
        let mut sum = 0f64;
        for (a, b) in before.chunks_exact(width).zip(after.chunks_exact(width)) {
            let dot: f64 = a
                .iter()
                .zip(b)
                .map(|(x, y)| (*x as f64) * (*y as f64))
                .sum();
            let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            sum += dot / (na * nb).max(1e-30);
        }
        influence[i] = 1.0 - sum / rows.max(1) as f64;
    };
    let mut cache = KvCache::new(model, tokens.len());
    forward_here(model, tokens, &mut cache, Logits::Last, Some(&mut observe))?;
    Ok(influence)
}

/// What [`block_influence`] watches: each block's index, its input and its output.
type Observer<'a> = &'a mut dyn FnMut(usize, &[f32], &[f32]);

fn forward_here(
    model: &Llama,
    tokens: &[u32],
    cache: &mut KvCache,
    logits: Logits,
    mut observe: Option<Observer<'_>>,
) -> Result<Vec<f32>> {
    let rows = tokens.len();
    let start = cache.len;
    let c = &model.config;
    check_tokens(tokens, start, cache.capacity, c.vocab)?;
    let (width, hd) = (c.width, c.head_dim());
    let mut x = with_f32_slice(&model.embeddings, |table| {
        let mut x = Vec::with_capacity(rows * width);
        for &t in tokens {
            let t = t as usize;
            x.extend_from_slice(&table[t * width..(t + 1) * width]);
        }
        x
    })?;
    let mut buf = Buffers::default();
    for (i, block) in model.blocks.iter().enumerate() {
        let before = observe.is_some().then(|| x.clone());
        let shape = Heads {
            heads: block.heads(hd),
            kv_heads: block.kv_heads(hd),
            head_dim: hd,
        };
        let (q_width, kv_width) = (shape.heads * hd, shape.kv_heads * hd);
        with_f32_slice(&block.attn_norm, |w| {
            rms_norm_into(&x, w, c.rms_eps, &mut buf.normed)
        })?;
        linear_into(&block.qkv, &buf.normed, rows, &mut buf.qkv, None, false)?;
        let stride = q_width + 2 * kv_width;
        for (t, row) in buf.qkv.chunks_exact_mut(stride).enumerate() {
            let pos = start + t;
            cache.rotate(&mut row[..q_width + kv_width], pos);
            let (k, v) = row[q_width..].split_at(kv_width);
            cache.write(i, pos, k, v);
        }
        let cached = cache.read(i, start + rows);
        attention(
            &buf.qkv,
            rows,
            start,
            cached,
            shape,
            &mut buf.context,
            &mut buf.scores,
        );
        let residual = x.clone();
        linear_into(
            &block.attn_out,
            &buf.context,
            rows,
            &mut x,
            Some(&residual),
            false,
        )?;
        with_f32_slice(&block.ffn_norm, |w| {
            rms_norm_into(&x, w, c.rms_eps, &mut buf.normed)
        })?;
        linear_into(
            &block.gate_up,
            &buf.normed,
            rows,
            &mut buf.gate_up,
            None,
            false,
        )?;
        swiglu(&buf.gate_up, block.ffn_width(), &mut buf.act);
        let residual = x.clone();
        linear_into(&block.down, &buf.act, rows, &mut x, Some(&residual), false)?;
        if let (Some(f), Some(before)) = (observe.as_mut(), &before) {
            f(i, before, &x);
        }
    }
    cache.len = start + rows;
    let last = match logits {
        Logits::Last => &x[(rows - 1) * width..],
        Logits::All => &x[..],
    };
    let out_rows = last.len() / width;
    with_f32_slice(&model.final_norm, |w| {
        rms_norm_into(last, w, c.rms_eps, &mut buf.normed)
    })?;
    let mut out = Vec::new();
    linear_into(&model.output, &buf.normed, out_rows, &mut out, None, false)?;
    Ok(out)
}
