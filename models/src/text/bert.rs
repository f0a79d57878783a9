//! slimbench's own BERT encoder on candle tensors: fused query/key/value projection, per-layer
//! head and feed-forward widths (so pruned checkpoints load), mean pooling with L2 normalisation.
//! Weights use the Hugging Face names, so a pruned or distilled variant is a valid checkpoint.

use std::collections::HashMap;

use candle_core::{DType, Device, Module, Tensor, D};

use crate::error::{ModelError, Result};
use crate::layer::{DenseLayer, LayerReport};
use crate::text::config::BertConfig;
use crate::text::tokenize::Encoded;

/// Layer normalisation over the last dimension.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// Scale.
    pub weight: Tensor,
    /// Shift.
    pub bias: Tensor,
    /// Epsilon.
    pub eps: f64,
}

impl LayerNorm {
    /// The same norm on `device`.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        Ok(Self {
            weight: self.weight.to_device(device)?,
            bias: self.bias.to_device(device)?,
            eps: self.eps,
        })
    }

    /// Normalises `x`; `train` selects the differentiable (slower) formulation.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train {
            return Ok(candle_nn::ops::layer_norm(
                &x.contiguous()?,
                &self.weight,
                &self.bias,
                self.eps as f32,
            )?);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        Ok(normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)?)
    }
}

/// One transformer layer.
#[derive(Debug, Clone)]
pub struct BertLayer {
    /// Attention heads left in this layer.
    pub heads: usize,
    /// Query, key and value projections fused into one (`3 x heads x head_dim` outputs).
    pub qkv: DenseLayer,
    /// Attention output projection.
    pub attn_out: DenseLayer,
    /// Layer norm after attention.
    pub attn_norm: LayerNorm,
    /// Feed-forward up projection.
    pub intermediate: DenseLayer,
    /// Feed-forward down projection.
    pub output: DenseLayer,
    /// Layer norm after the feed-forward block.
    pub out_norm: LayerNorm,
}

impl BertLayer {
    /// The four Linear layers, in order.
    pub fn linears(&self) -> [&DenseLayer; 4] {
        [&self.qkv, &self.attn_out, &self.intermediate, &self.output]
    }

    /// The same layer with each Linear replaced by `f(linear)`.
    pub fn map_linears(
        &self,
        mut f: impl FnMut(&DenseLayer) -> Result<DenseLayer>,
    ) -> Result<Self> {
        Ok(Self {
            qkv: f(&self.qkv)?,
            attn_out: f(&self.attn_out)?,
            intermediate: f(&self.intermediate)?,
            output: f(&self.output)?,
            ..self.clone()
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        mask_bias: &Tensor,
        head_dim: usize,
        train: bool,
    ) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let x2 = x.reshape((b * t, h))?;
        let width = self.heads * head_dim;
        let qkv = self.qkv.forward(&x2)?;
        let split = |i: usize| -> Result<Tensor> {
            Ok(qkv
                .narrow(1, i * width, width)?
                .reshape((b, t, self.heads, head_dim))?
                .transpose(1, 2)?)
        };
        let q = split(0)?.contiguous()?;
        let k_t = split(1)?.transpose(2, 3)?.contiguous()?;
        let v = split(2)?.contiguous()?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let scores = (q.matmul(&k_t)? * scale)?.broadcast_add(mask_bias)?;
        let probs = if train {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * t, width))?;
        let attended = (self.attn_out.forward(&context)? + &x2)?;
        let h1 = self.attn_norm.forward(&attended, train)?;
        let inner = self.intermediate.forward(&h1)?.gelu_erf()?;
        let h2 = self
            .out_norm
            .forward(&(self.output.forward(&inner)? + &h1)?, train)?;
        Ok(h2.reshape((b, t, h))?)
    }
}

/// A BERT encoder.
#[derive(Debug, Clone)]
pub struct Bert {
    /// The checkpoint's configuration (sizes of the unpruned model).
    pub config: BertConfig,
    /// Token embeddings `vocab x hidden`.
    pub word_embeddings: Tensor,
    /// Position embeddings `positions x hidden`.
    pub position_embeddings: Tensor,
    /// Token type embeddings `types x hidden`.
    pub type_embeddings: Tensor,
    /// Layer norm of the embeddings.
    pub embed_norm: LayerNorm,
    /// The transformer layers.
    pub layers: Vec<BertLayer>,
}

fn take(map: &HashMap<String, Tensor>, prefix: &str, name: &str, origin: &str) -> Result<Tensor> {
    let full = format!("{prefix}{name}");
    let found = map.get(&full).or_else(|| {
        // Older checkpoints call the layer norm parameters gamma and beta.
        let alt = full
            .replace("LayerNorm.weight", "LayerNorm.gamma")
            .replace("LayerNorm.bias", "LayerNorm.beta");
        map.get(&alt)
    });
    let t = found.ok_or_else(|| ModelError::Data {
        source_name: origin.to_string(),
        message: format!(
            "missing tensor {full:?}: not a BERT checkpoint in the Hugging Face layout"
        ),
    })?;
    Ok(t.to_dtype(DType::F32)?)
}

impl Bert {
    /// The same model on `device` (each Linear keeps its storage).
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(BertLayer {
                    attn_norm: l.attn_norm.to_device(device)?,
                    out_norm: l.out_norm.to_device(device)?,
                    ..l.map_linears(|lin| lin.to_device(device))?
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: self.config.clone(),
            word_embeddings: self.word_embeddings.to_device(device)?,
            position_embeddings: self.position_embeddings.to_device(device)?,
            type_embeddings: self.type_embeddings.to_device(device)?,
            embed_norm: self.embed_norm.to_device(device)?,
            layers,
        })
    }

    /// The device the model's weights are on.
    pub fn device(&self) -> Device {
        self.word_embeddings.device().clone()
    }

    /// Builds the model from Hugging Face-named tensors (`bert.` prefix optional); the number of
    /// layers, heads per layer and feed-forward widths come from the tensors, the head width and
    /// epsilon from `config`. `origin` names the file in errors.
    pub fn from_tensors(
        config: &BertConfig,
        map: &HashMap<String, Tensor>,
        origin: &str,
    ) -> Result<Self> {
        let prefix = if map.contains_key("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let get = |name: &str| take(map, prefix, name, origin);
        let norm = |name: &str| -> Result<LayerNorm> {
            Ok(LayerNorm {
                weight: get(&format!("{name}.LayerNorm.weight"))?,
                bias: get(&format!("{name}.LayerNorm.bias"))?,
                eps: config.layer_norm_eps,
            })
        };
        let linear = |name: &str| -> Result<DenseLayer> {
            DenseLayer::from_f32(
                name,
                &get(&format!("{name}.weight"))?,
                get(&format!("{name}.bias"))?,
            )
        };
        let depth = (0..)
            .take_while(|i| {
                map.contains_key(&format!(
                    "{prefix}encoder.layer.{i}.attention.self.query.weight"
                ))
            })
            .count();
        if depth == 0 {
            return Err(ModelError::Data {
                source_name: origin.to_string(),
                message:
                    "no encoder.layer.0 tensors: not a BERT checkpoint in the Hugging Face layout"
                        .into(),
            });
        }
        let head_dim = config.head_dim();
        let mut layers = Vec::with_capacity(depth);
        for i in 0..depth {
            let p = format!("encoder.layer.{i}");
            let part = |n: &str| -> Result<(Tensor, Tensor)> {
                let n = format!("{p}.attention.self.{n}");
                Ok((get(&format!("{n}.weight"))?, get(&format!("{n}.bias"))?))
            };
            let (qw, qb) = part("query")?;
            let (kw, kb) = part("key")?;
            let (vw, vb) = part("value")?;
            let rows = qw.dim(0)?;
            if rows == 0 || !rows.is_multiple_of(head_dim) {
                return Err(ModelError::Data {
                    source_name: origin.to_string(),
                    message: format!(
                        "{p}: query has {rows} rows, not a multiple of the head width {head_dim}"
                    ),
                });
            }
            let qkv = DenseLayer::from_f32(
                format!("{p}.attention.qkv"),
                &Tensor::cat(&[&qw, &kw, &vw], 0)?,
                Tensor::cat(&[&qb, &kb, &vb], 0)?,
            )?;
            layers.push(BertLayer {
                heads: rows / head_dim,
                qkv,
                attn_out: linear(&format!("{p}.attention.output.dense"))?,
                attn_norm: norm(&format!("{p}.attention.output"))?,
                intermediate: linear(&format!("{p}.intermediate.dense"))?,
                output: linear(&format!("{p}.output.dense"))?,
                out_norm: norm(&format!("{p}.output"))?,
            });
        }
        Ok(Self {
            config: config.clone(),
            word_embeddings: get("embeddings.word_embeddings.weight")?,
            position_embeddings: get("embeddings.position_embeddings.weight")?,
            type_embeddings: get("embeddings.token_type_embeddings.weight")?,
            embed_norm: norm("embeddings")?,
            layers,
        })
    }

    /// The weights under Hugging Face names (f32 layers only: the state after training steps).
    pub fn to_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut map = HashMap::new();
        let mut put = |name: String, t: &Tensor| {
            map.insert(name, t.clone());
        };
        put(
            "embeddings.word_embeddings.weight".into(),
            &self.word_embeddings,
        );
        put(
            "embeddings.position_embeddings.weight".into(),
            &self.position_embeddings,
        );
        put(
            "embeddings.token_type_embeddings.weight".into(),
            &self.type_embeddings,
        );
        put(
            "embeddings.LayerNorm.weight".into(),
            &self.embed_norm.weight,
        );
        put("embeddings.LayerNorm.bias".into(), &self.embed_norm.bias);
        let width = self.config.head_dim();
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("encoder.layer.{i}");
            let qkv_w = layer.qkv.weight_f32()?;
            let a = layer.heads * width;
            for (j, part) in ["query", "key", "value"].iter().enumerate() {
                put(
                    format!("{p}.attention.self.{part}.weight"),
                    &qkv_w.narrow(0, j * a, a)?.contiguous()?,
                );
                put(
                    format!("{p}.attention.self.{part}.bias"),
                    &layer.qkv.bias.narrow(0, j * a, a)?.contiguous()?,
                );
            }
            for (name, lin) in [
                ("attention.output.dense", &layer.attn_out),
                ("intermediate.dense", &layer.intermediate),
                ("output.dense", &layer.output),
            ] {
                put(format!("{p}.{name}.weight"), &lin.weight_f32()?);
                put(format!("{p}.{name}.bias"), &lin.bias);
            }
            for (name, n) in [
                ("attention.output", &layer.attn_norm),
                ("output", &layer.out_norm),
            ] {
                put(format!("{p}.{name}.LayerNorm.weight"), &n.weight);
                put(format!("{p}.{name}.LayerNorm.bias"), &n.bias);
            }
        }
        Ok(map)
    }

    /// Token + type + position embeddings `[batch, tokens, hidden]` of an encoded batch, before
    /// the embedding layer norm; an error if the batch is longer than the model's positions.
    pub fn embedding_sum(&self, input: &Encoded) -> Result<Tensor> {
        let (b, t) = input.ids.dims2()?;
        let h = self.config.hidden_size;
        if t > self.position_embeddings.dim(0)? {
            return Err(ModelError::Invalid(format!(
                "sequence of {t} tokens is longer than the model's {} positions",
                self.position_embeddings.dim(0)?
            )));
        }
        let words = self
            .word_embeddings
            .index_select(&input.ids.flatten_all()?, 0)?;
        let types = self
            .type_embeddings
            .index_select(&input.type_ids.flatten_all()?, 0)?;
        let positions = self.position_embeddings.narrow(0, 0, t)?;
        Ok((words + types)?
            .reshape((b, t, h))?
            .broadcast_add(&positions)?)
    }

    /// Hidden states `[batch, tokens, hidden]` of an encoded batch; `train` selects differentiable ops.
    pub fn hidden_states(&self, input: &Encoded, train: bool) -> Result<Tensor> {
        let (b, t) = input.ids.dims2()?;
        let mut x = self
            .embed_norm
            .forward(&self.embedding_sum(input)?, train)?;
        // 0 where a token is real, a large negative number where it is padding.
        let mask_bias = ((&input.mask - 1.0)? * 1e4)?.reshape((b, 1, 1, t))?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask_bias, self.config.head_dim(), train)?;
        }
        Ok(x)
    }

    /// [`Bert::embed`] through candle's tensor ops: differentiable, on any device, and the
    /// straightforward path the CPU kernels are tested against.
    pub fn embed_with_candle_ops(&self, input: &Encoded, train: bool) -> Result<Tensor> {
        mean_pool_normalized(&self.hidden_states(input, train)?, &input.mask)
    }

    /// FLOPs of one sequence of `tokens` through the encoder (a multiply-add counts two): every
    /// Linear at its stored shape, and the two attention products. Embeddings, norms, softmax and
    /// GELU are left out (under 1% on MiniLM).
    pub fn flops_per_sequence(&self, tokens: usize) -> f64 {
        let t = tokens as f64;
        let head_dim = self.config.head_dim() as f64;
        self.layers
            .iter()
            .map(|l| {
                let linears: f64 = l
                    .linears()
                    .iter()
                    .map(|lin| 2.0 * t * (lin.in_dim * lin.out_dim) as f64)
                    .sum();
                linears + 2.0 * 2.0 * t * t * l.heads as f64 * head_dim
            })
            .sum()
    }

    /// Parameters: embeddings, layer norms and every Linear.
    pub fn parameter_count(&self) -> usize {
        self.fixed_parameter_count()
            + self
                .layers
                .iter()
                .flat_map(|l| l.linears())
                .map(DenseLayer::parameter_count)
                .sum::<usize>()
    }

    /// Parameters outside the Linear layers (embeddings and layer norms), which stay f32.
    fn fixed_parameter_count(&self) -> usize {
        let emb = self.word_embeddings.elem_count()
            + self.position_embeddings.elem_count()
            + self.type_embeddings.elem_count()
            + 2 * self.embed_norm.weight.elem_count();
        emb + self
            .layers
            .iter()
            .map(|l| 2 * (l.attn_norm.weight.elem_count() + l.out_norm.weight.elem_count()))
            .sum::<usize>()
    }

    /// Parameters that are not zero.
    pub fn nonzero_parameter_count(&self) -> Result<usize> {
        let mut n = self.fixed_parameter_count();
        for l in self.layers.iter().flat_map(|l| l.linears()) {
            n += l.nonzero_parameter_count()?;
        }
        Ok(n)
    }

    /// The report entry of the embeddings and layer norms, all f32.
    pub fn embeddings_report(&self) -> LayerReport {
        LayerReport {
            name: "embeddings+layer_norms".into(),
            in_dim: self.config.vocab_size,
            out_dim: self.config.hidden_size,
            format: "f32".into(),
            note: Some("token, position and type embeddings and every layer norm, kept f32".into()),
            weight_sparsity: 0.0,
            bytes: self.fixed_parameter_count() * 4,
        }
    }
}

/// Mean of the states of real tokens (mask 1), L2-normalised: sentence-transformers' pooling.
pub fn mean_pool_normalized(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&m)?.sum(1)?;
    let count = mask.sum_keepdim(1)?.clamp(1e-9, f32::MAX)?;
    let mean = summed.broadcast_div(&count)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
    Ok(mean.broadcast_div(&norm)?)
}

/// Row-wise cosine similarity of two `[n, d]` matrices of unit vectors, as a vector of n.
pub fn row_cosines(a: &Tensor, b: &Tensor) -> Result<Vec<f32>> {
    Ok((a * b)?.sum(1)?.to_vec1::<f32>()?)
}

/// A BERT with random weights (for tests and examples): `layers` layers of `heads` heads.
pub fn random_bert(config: &BertConfig, seed: u64) -> Result<Bert> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let dev = &Device::Cpu;
    let mut rand_t = |shape: &[usize], scale: f32| -> Result<Tensor> {
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-scale..scale)).collect();
        Ok(Tensor::from_vec(v, shape, dev)?)
    };
    let (h, f) = (config.hidden_size, config.intermediate_size);
    let mut map = HashMap::new();
    map.insert(
        "embeddings.word_embeddings.weight".to_string(),
        rand_t(&[config.vocab_size, h], 1.0)?,
    );
    map.insert(
        "embeddings.position_embeddings.weight".to_string(),
        rand_t(&[config.max_position_embeddings, h], 0.2)?,
    );
    map.insert(
        "embeddings.token_type_embeddings.weight".to_string(),
        rand_t(&[config.type_vocab_size, h], 0.2)?,
    );
    let ones = Tensor::ones(h, DType::F32, dev)?;
    let zeros = Tensor::zeros(h, DType::F32, dev)?;
    let mut norms = vec!["embeddings".to_string()];
    let wscale = 1.0 / (h as f32).sqrt();
    for i in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{i}");
        for (name, rows, cols) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", f, h),
            ("output.dense", h, f),
        ] {
            map.insert(format!("{p}.{name}.weight"), rand_t(&[rows, cols], wscale)?);
            map.insert(format!("{p}.{name}.bias"), rand_t(&[rows], 0.1)?);
        }
        norms.push(format!("{p}.attention.output"));
        norms.push(format!("{p}.output"));
    }
    for n in norms {
        map.insert(format!("{n}.LayerNorm.weight"), ones.clone());
        map.insert(format!("{n}.LayerNorm.bias"), zeros.clone());
    }
    Bert::from_tensors(config, &map, "random BERT")
}
