//! A llama-architecture language model as slimbench keeps it: token embeddings, blocks of
//! (RMSNorm, fused query/key/value projection, attention output, RMSNorm, fused gate/up
//! projection, down projection), a final RMSNorm and the output head. Each block keeps its own
//! head counts and widths, so that pruning may remove key/value groups and feed-forward neurons,
//! and layer dropping removes blocks.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::fetch::data_err;
use crate::layer::{DenseLayer, LayerReport};
use crate::llm::gguf::{block_tensor_names, GgufModel, LlamaConfig};

/// One transformer block.
#[derive(Debug, Clone)]
pub struct LlamaBlock {
    /// RMSNorm weight before attention.
    pub attn_norm: Tensor,
    /// Queries, keys and values in one product: `(heads + 2 kv_heads) * head_dim` outputs, the
    /// queries first, then the keys, then the values.
    pub qkv: DenseLayer,
    /// Attention output projection (`heads * head_dim` to the width).
    pub attn_out: DenseLayer,
    /// RMSNorm weight before the feed-forward layer.
    pub ffn_norm: Tensor,
    /// Gate and up projections in one product: `2 * ffn` outputs, the gate's first.
    pub gate_up: DenseLayer,
    /// Down projection (`ffn` to the width).
    pub down: DenseLayer,
}

impl LlamaBlock {
    /// The block's Linears, in order.
    pub fn linears(&self) -> [&DenseLayer; 4] {
        [&self.qkv, &self.attn_out, &self.gate_up, &self.down]
    }

    /// Query heads of this block.
    pub fn heads(&self, head_dim: usize) -> usize {
        self.attn_out.in_dim / head_dim
    }

    /// Key/value heads of this block.
    pub fn kv_heads(&self, head_dim: usize) -> usize {
        (self.qkv.out_dim - self.attn_out.in_dim) / (2 * head_dim)
    }

    /// Feed-forward neurons of this block.
    pub fn ffn_width(&self) -> usize {
        self.down.in_dim
    }
}

/// How the token embedding table is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingStorage {
    /// Format name (`f32`, or the block format of a `-all` technique).
    pub format: String,
    /// Bytes as stored.
    pub bytes: usize,
}

/// A llama-architecture model.
#[derive(Debug, Clone)]
pub struct Llama {
    /// The shape it was read with (blocks may since have been pruned or dropped).
    pub config: LlamaConfig,
    /// Token embeddings, `vocab x width`, f32 for the lookup.
    pub embeddings: Tensor,
    /// How the embedding table is stored.
    pub embedding_storage: EmbeddingStorage,
    /// The blocks, in order.
    pub blocks: Vec<LlamaBlock>,
    /// Final RMSNorm weight.
    pub final_norm: Tensor,
    /// The output head (`width` to `vocab`); a copy of the embeddings where the file ties them.
    pub output: DenseLayer,
    /// True when the file stores no output head of its own (the embeddings serve as both).
    pub tied: bool,
}

fn zeros(n: usize) -> Result<Tensor> {
    Ok(Tensor::zeros(n, candle_core::DType::F32, &Device::Cpu)?)
}

/// A Linear without bias from a weight `out x in`.
fn linear(name: &str, weight: &Tensor) -> Result<DenseLayer> {
    let out = weight.dims2()?.0;
    DenseLayer::from_f32(name, weight, zeros(out)?)
}

impl Llama {
    /// The f32 model dequantized from a GGUF file's tensors; `path` names the file in errors.
    pub fn from_gguf(gguf: &GgufModel, path: &Path) -> Result<Self> {
        let c = &gguf.config;
        let (w, kv, f) = (c.width, c.kv_width(), c.ffn_width);
        gguf.check_shape("token_embd.weight", &[c.vocab, w], path)?;
        gguf.check_shape("output_norm.weight", &[w], path)?;
        let mut tensors = HashMap::new();
        tensors.insert(
            "token_embd".to_string(),
            gguf.f32("token_embd.weight", path)?,
        );
        tensors.insert("output_norm".into(), gguf.f32("output_norm.weight", path)?);
        let tied = !gguf.tensors.contains_key("output.weight");
        if !tied {
            gguf.check_shape("output.weight", &[c.vocab, w], path)?;
            tensors.insert("output".into(), gguf.f32("output.weight", path)?);
        }
        for i in 0..c.blocks {
            let [an, q, k, v, o, fnorm, gate, up, down] = block_tensor_names(i);
            let shapes: [(&String, Vec<usize>); 9] = [
                (&an, vec![w]),
                (&q, vec![w, w]),
                (&k, vec![kv, w]),
                (&v, vec![kv, w]),
                (&o, vec![w, w]),
                (&fnorm, vec![w]),
                (&gate, vec![f, w]),
                (&up, vec![f, w]),
                (&down, vec![w, f]),
            ];
            for (name, dims) in &shapes {
                gguf.check_shape(name, dims, path)?;
            }
            let get = |n: &String| gguf.f32(n, path);
            let p = |t: &str| format!("blk.{i}.{t}");
            tensors.insert(p("attn_norm"), get(&an)?);
            tensors.insert(
                p("attn_qkv"),
                Tensor::cat(&[get(&q)?, get(&k)?, get(&v)?], 0)?,
            );
            tensors.insert(p("attn_output"), get(&o)?);
            tensors.insert(p("ffn_norm"), get(&fnorm)?);
            tensors.insert(p("ffn_gate_up"), Tensor::cat(&[get(&gate)?, get(&up)?], 0)?);
            tensors.insert(p("ffn_down"), get(&down)?);
        }
        Self::from_tensors(c, &tensors, &path.display().to_string())
    }

    /// The model from [`Llama::to_tensors`]' names; `origin` names the source in errors. The
    /// number of blocks and each block's widths come from the tensors (pruned models differ from
    /// `config`).
    pub fn from_tensors(
        config: &LlamaConfig,
        tensors: &HashMap<String, Tensor>,
        origin: &str,
    ) -> Result<Self> {
        let get = |name: &str| {
            tensors
                .get(name)
                .cloned()
                .ok_or_else(|| data_err(origin, format!("tensor {name:?} is missing")))
        };
        let mut blocks = Vec::new();
        let hd = config.head_dim();
        while tensors.contains_key(&format!("blk.{}.attn_norm", blocks.len())) {
            let i = blocks.len();
            let p = |t: &str| format!("blk.{i}.{t}");
            let block = LlamaBlock {
                attn_norm: get(&p("attn_norm"))?,
                qkv: linear(&p("attn_qkv"), &get(&p("attn_qkv"))?)?,
                attn_out: linear(&p("attn_output"), &get(&p("attn_output"))?)?,
                ffn_norm: get(&p("ffn_norm"))?,
                gate_up: linear(&p("ffn_gate_up"), &get(&p("ffn_gate_up"))?)?,
                down: linear(&p("ffn_down"), &get(&p("ffn_down"))?)?,
            };
            let heads = block.attn_out.in_dim;
            let extra = block.qkv.out_dim.checked_sub(heads);
            if !heads.is_multiple_of(hd)
                || extra.is_none_or(|e| !e.is_multiple_of(2 * hd) || e == 0)
                || block.gate_up.out_dim != 2 * block.down.in_dim
                || block.qkv.in_dim != config.width
            {
                return Err(data_err(
                    origin,
                    format!("block {i}: the tensors' shapes do not form a llama block"),
                ));
            }
            if !block.heads(hd).is_multiple_of(block.kv_heads(hd)) {
                return Err(data_err(
                    origin,
                    format!("block {i}: query heads are not a multiple of key/value heads"),
                ));
            }
            blocks.push(block);
        }
        if blocks.is_empty() {
            return Err(data_err(origin, "no transformer block (blk.0.*) found"));
        }
        let embeddings = get("token_embd")?;
        let tied = !tensors.contains_key("output");
        let output = match tensors.get("output") {
            Some(w) => linear("output", w)?,
            None => linear("output", &embeddings)?,
        };
        Ok(Self {
            config: config.clone(),
            embedding_storage: EmbeddingStorage {
                format: "f32".into(),
                bytes: embeddings.elem_count() * 4,
            },
            embeddings,
            blocks,
            final_norm: get("output_norm")?,
            output,
            tied,
        })
    }

    /// Every weight in f32 by name, the fused products as they run (`blk.N.attn_qkv`,
    /// `blk.N.ffn_gate_up`); the output head only when it is not tied.
    pub fn to_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut t = HashMap::new();
        t.insert("token_embd".into(), self.embeddings.clone());
        t.insert("output_norm".into(), self.final_norm.clone());
        if !self.tied {
            t.insert("output".into(), self.output.weight_f32()?);
        }
        for (i, b) in self.blocks.iter().enumerate() {
            let p = |n: &str| format!("blk.{i}.{n}");
            t.insert(p("attn_norm"), b.attn_norm.clone());
            t.insert(p("attn_qkv"), b.qkv.weight_f32()?);
            t.insert(p("attn_output"), b.attn_out.weight_f32()?);
            t.insert(p("ffn_norm"), b.ffn_norm.clone());
            t.insert(p("ffn_gate_up"), b.gate_up.weight_f32()?);
            t.insert(p("ffn_down"), b.down.weight_f32()?);
        }
        Ok(t)
    }

    /// Every Linear, in the record's order: each block's four, then the output head.
    pub fn linears(&self) -> Vec<&DenseLayer> {
        let mut all: Vec<&DenseLayer> = self.blocks.iter().flat_map(|b| b.linears()).collect();
        all.push(&self.output);
        all
    }

    /// Parameters that are not zero: those outside the Linears (all counted), and each Linear's
    /// weights that are not zero once decoded; the output head's only when it is not tied to the
    /// embeddings, as [`Self::parameter_count`] counts it.
    pub fn nonzero_parameter_count(&self) -> Result<usize> {
        let mut n = self.fixed_parameter_count();
        for l in self.blocks.iter().flat_map(|b| b.linears()) {
            n += l.nonzero_parameter_count()?;
        }
        if !self.tied {
            n += self.output.nonzero_parameter_count()?;
        }
        Ok(n)
    }

    /// Parameters outside the Linears: the embedding table (counted once when tied) and the
    /// norms.
    pub fn fixed_parameter_count(&self) -> usize {
        let norms: usize = self
            .blocks
            .iter()
            .map(|b| b.attn_norm.elem_count() + b.ffn_norm.elem_count())
            .sum::<usize>()
            + self.final_norm.elem_count();
        norms + self.embeddings.elem_count()
    }

    /// The record's entry for the embeddings and norms.
    pub fn embeddings_report(&self) -> LayerReport {
        let norms = self.fixed_parameter_count() - self.embeddings.elem_count();
        let tied = if self.tied {
            "; the output head is tied to the table in the file (one table stored) and is reported as its own Linear here"
        } else {
            ""
        };
        LayerReport {
            name: "token_embd+norms".into(),
            in_dim: self.config.vocab,
            out_dim: self.config.width,
            format: self.embedding_storage.format.clone(),
            note: Some(format!(
                "token embeddings ({}) and every RMSNorm (f32){tied}",
                self.embedding_storage.format
            )),
            weight_sparsity: 0.0,
            bytes: self.embedding_storage.bytes + norms * 4,
        }
    }

    /// Bytes of the model as stored: the Linears' weights (no biases: a llama has none), the
    /// embedding table and the norms; a tied output head whose storage equals the table's is
    /// counted once.
    pub fn stored_bytes(&self) -> usize {
        let linear_weights = |l: &DenseLayer| l.size_bytes() - l.out_dim * 4;
        let blocks: usize = self
            .blocks
            .iter()
            .flat_map(|b| b.linears())
            .map(linear_weights)
            .sum();
        let head_shares_table = self.tied && self.output.format() == self.embedding_storage.format;
        let head = if head_shares_table {
            0
        } else {
            linear_weights(&self.output)
        };
        blocks + head + self.embeddings_report().bytes
    }

    /// All parameters (the tied head counted once).
    pub fn parameter_count(&self) -> usize {
        let linears: usize = self.linears().iter().map(|l| l.in_dim * l.out_dim).sum();
        let head = if self.tied {
            self.output.in_dim * self.output.out_dim
        } else {
            0
        };
        linears - head + self.fixed_parameter_count()
    }
}
