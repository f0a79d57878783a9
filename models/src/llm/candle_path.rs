//! The llama forward pass in candle's tensor ops, for cells off the CPU (`cuda:N`): the same
//! arithmetic as [`crate::llm::infer`] (RMSNorm, GGUF's interleaved rotary pairs, grouped-query
//! causal attention over a key/value cache, SwiGLU), with every weight on the device and the
//! block formats multiplied by candle's `QMatMul` (its CUDA kernels on a GPU). It runs on any
//! candle device, the CPU included, which is how the tests hold it to slimbench's own engine.

use candle_core::{DType, Device, Module, Tensor};

use crate::error::{ModelError, Result};
use crate::layer::DenseLayer;
use crate::llm::gguf::LlamaConfig;
use crate::llm::infer::{check_tokens, rope_tables, Logits};
use crate::llm::model::Llama;

/// One block with its weights on the device.
struct DeviceBlock {
    attn_norm: Tensor,
    qkv: DenseLayer,
    attn_out: DenseLayer,
    ffn_norm: Tensor,
    gate_up: DenseLayer,
    down: DenseLayer,
    heads: usize,
    kv_heads: usize,
    ffn: usize,
}

/// A llama model on a candle device.
pub struct DeviceLlama {
    config: LlamaConfig,
    device: Device,
    embeddings: Tensor,
    blocks: Vec<DeviceBlock>,
    final_norm: Tensor,
    output: DenseLayer,
    cos: Tensor,
    sin: Tensor,
    capacity: usize,
}

/// The keys and values of every block on the device, `(1, kv_heads, capacity, head_dim)` each,
/// written in place as tokens arrive.
pub struct DeviceKvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    len: usize,
}

impl DeviceKvCache {
    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no token is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every token after the first `len`.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl DeviceLlama {
    /// `model` on `device`, with rotary tables for `capacity` tokens.
    pub fn new(model: &Llama, device: &Device, capacity: usize) -> Result<Self> {
        let config = model.config.clone();
        let hd = config.head_dim();
        let mut blocks = Vec::with_capacity(model.blocks.len());
        for b in &model.blocks {
            let (heads, kv_heads) = (b.heads(hd), b.kv_heads(hd));
            if kv_heads == 0 || heads % kv_heads != 0 {
                return Err(ModelError::Invalid(format!(
                    "block with {heads} query heads over {kv_heads} key/value heads: the heads must be a whole multiple of the key/value heads"
                )));
            }
            blocks.push(DeviceBlock {
                attn_norm: b.attn_norm.to_device(device)?,
                qkv: b.qkv.to_device_on_candle_kernels(device)?,
                attn_out: b.attn_out.to_device_on_candle_kernels(device)?,
                ffn_norm: b.ffn_norm.to_device(device)?,
                gate_up: b.gate_up.to_device_on_candle_kernels(device)?,
                down: b.down.to_device_on_candle_kernels(device)?,
                heads,
                kv_heads,
                ffn: b.ffn_width(),
            });
        }
        let (cos, sin) = rope_tables(&config, capacity);
        let half = hd / 2;
        Ok(Self {
            device: device.clone(),
            embeddings: model.embeddings.to_device(device)?,
            blocks,
            final_norm: model.final_norm.to_device(device)?,
            output: model.output.to_device_on_candle_kernels(device)?,
            cos: Tensor::from_vec(cos, (capacity, half), device)?,
            sin: Tensor::from_vec(sin, (capacity, half), device)?,
            capacity,
            config,
        })
    }

    /// An empty key/value cache for this model's capacity, on its device.
    pub fn cache(&self) -> Result<DeviceKvCache> {
        let hd = self.config.head_dim();
        let zeros = |b: &DeviceBlock| {
            Tensor::zeros((1, b.kv_heads, self.capacity, hd), DType::F32, &self.device)
        };
        Ok(DeviceKvCache {
            keys: self
                .blocks
                .iter()
                .map(zeros)
                .collect::<candle_core::Result<_>>()?,
            values: self
                .blocks
                .iter()
                .map(zeros)
                .collect::<candle_core::Result<_>>()?,
            len: 0,
        })
    }

    /// Runs `tokens` at the cache's position and returns the logits of the last token or of
    /// every token (`rows x vocab`), copied to the host.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut DeviceKvCache,
        logits: Logits,
    ) -> Result<Vec<f32>> {
        let c = &self.config;
        let (rows, start) = (tokens.len(), cache.len);
        check_tokens(tokens, start, self.capacity, c.vocab)?;
        let hd = c.head_dim();
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embeddings.index_select(&ids, 0)?;
        let cos = self.cos.narrow(0, start, rows)?;
        let sin = self.sin.narrow(0, start, rows)?;
        let keys_len = start + rows;
        let mask = causal_mask(rows, start, &self.device)?;
        let scale = 1.0 / (hd as f64).sqrt();
        for (i, b) in self.blocks.iter().enumerate() {
            let normed = candle_nn::ops::rms_norm(&x, &b.attn_norm, c.rms_eps)?;
            let qkv = b.qkv.forward(&normed)?;
            let (q_width, kv_width) = (b.heads * hd, b.kv_heads * hd);
            // (rows, n * hd) -> (1, n, rows, hd)
            let heads_first = |t: Tensor, n: usize| -> candle_core::Result<Tensor> {
                t.reshape((rows, n, hd))?
                    .transpose(0, 1)?
                    .unsqueeze(0)?
                    .contiguous()
            };
            let q = heads_first(qkv.narrow(1, 0, q_width)?, b.heads)?;
            let k = heads_first(qkv.narrow(1, q_width, kv_width)?, b.kv_heads)?;
            let v = heads_first(qkv.narrow(1, q_width + kv_width, kv_width)?, b.kv_heads)?;
            let q = candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?;
            cache.keys[i].slice_set(&k, 2, start)?;
            cache.values[i].slice_set(&v, 2, start)?;
            let keys = cache.keys[i].narrow(2, 0, keys_len)?.contiguous()?;
            let values = cache.values[i].narrow(2, 0, keys_len)?.contiguous()?;
            // The query heads of one key/value group side by side: (1, kv_heads, group * rows, hd),
            // so each cached row is read once per group, as the CPU engine does.
            let group = b.heads / b.kv_heads;
            let q = q.reshape((1, b.kv_heads, group * rows, hd))?;
            let scores = (q.matmul(&keys.t()?)? * scale)?;
            let scores = match &mask {
                Some(mask) => scores
                    .reshape((1, b.kv_heads, group, rows, keys_len))?
                    .broadcast_add(mask)?
                    .reshape((1, b.kv_heads, group * rows, keys_len))?,
                None => scores,
            };
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let context = probs
                .matmul(&values)?
                .reshape((b.heads, rows, hd))?
                .transpose(0, 1)?
                .reshape((rows, q_width))?;
            x = (&x + b.attn_out.forward(&context)?)?;
            let normed = candle_nn::ops::rms_norm(&x, &b.ffn_norm, c.rms_eps)?;
            let gate_up = b.gate_up.forward(&normed)?;
            let act = (candle_nn::ops::silu(&gate_up.narrow(1, 0, b.ffn)?)?
                * gate_up.narrow(1, b.ffn, b.ffn)?)?;
            x = (&x + b.down.forward(&act)?)?;
        }
        cache.len = keys_len;
        let last = match logits {
            Logits::Last => x.narrow(0, rows - 1, 1)?,
            Logits::All => x,
        };
        let normed = candle_nn::ops::rms_norm(&last.contiguous()?, &self.final_norm, c.rms_eps)?;
        let out = self.output.forward(&normed)?;
        Ok(out.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// The device the weights are on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// `(rows, start + rows)`: zero where token `start + t` may see key `j` (`j <= start + t`), minus
/// infinity after; `None` for one token (it sees every key).
fn causal_mask(rows: usize, start: usize, device: &Device) -> Result<Option<Tensor>> {
    if rows == 1 {
        return Ok(None);
    }
    let keys_len = start + rows;
    let mask: Vec<f32> = (0..rows)
        .flat_map(|t| {
            (0..keys_len).map(move |j| {
                if j <= start + t {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Ok(Some(Tensor::from_vec(mask, (rows, keys_len), device)?))
}
