//! The techniques on BERT that are its own: the token embedding table in a block format,
//! structured pruning of attention heads and feed-forward neurons, and distillation into a
//! shallower student trained to match the teacher's sentence embeddings. (Quantization, int8 and
//! casts of the Linears are [`crate::linears`]'.)

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use candle_core::{Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::kernels::blocks::BlockFormat;
use crate::layer::LayerReport;
use crate::pruning::{kept_count, top_indices, Norm};
use crate::text::bert::Bert;
use crate::text::tokenize::{Padding, TextTokenizer};

/// Quantizes the token embedding table to `format` (its rows are `hidden` wide, so a block-32
/// format fits any BERT whose hidden size is a multiple of 32). The table is stored quantized; for
/// the lookup it is dequantized once to f32, so quality reflects the rounding and the time does not
/// change. Returns the model and the report entry of the embeddings.
pub fn quantize_embeddings(bert: &Bert, format: BlockFormat) -> Result<(Bert, LayerReport)> {
    let hidden = bert.config.hidden_size;
    let chosen = format.choose_for_width(hidden).ok_or_else(|| {
        ModelError::NotApplicable(format!(
            "hidden size {hidden} fits no block of {}'s fallback chain",
            format.name()
        ))
    })?;
    let table = bert.word_embeddings.to_device(&candle_core::Device::Cpu)?;
    let q = candle_core::quantized::QTensor::quantize(&table, chosen.ggml())?;
    let quantized_bytes = q.storage_size_in_bytes();
    let word_embeddings = q
        .dequantize(&candle_core::Device::Cpu)?
        .to_device(bert.word_embeddings.device())?;
    let out = Bert {
        word_embeddings,
        ..bert.clone()
    };
    let mut report = out.embeddings_report();
    let f32_table = table.elem_count() * 4;
    report.format = format!("f32+{}", chosen.name());
    report.bytes = report.bytes - f32_table + quantized_bytes;
    report.note = Some(format!(
        "token embeddings stored in {} ({} bytes instead of {f32_table}), dequantized to f32 at load \
         for the lookup; position and type embeddings and layer norms f32",
        chosen.name(),
        quantized_bytes
    ));
    Ok((out, report))
}

/// Removes `ratio` of the attention heads and of the feed-forward neurons of every layer (at least
/// one of each is kept), ranked by the `norm` of the weights that read and write each of them.
pub fn prune_bert_structured(bert: &Bert, ratio: f64, norm: Norm) -> Result<Bert> {
    if !(0.0..1.0).contains(&ratio) {
        return Err(ModelError::Invalid(format!(
            "ratio {ratio} is outside 0..1"
        )));
    }
    let d = bert.config.head_dim();
    let mut layers = Vec::new();
    for layer in &bert.layers {
        let a = layer.heads * d;
        // Head scores: the norm of all the weights that read or write the head (its query, key
        // and value rows, its output-projection columns).
        let rows = crate::pruning::entry_sums(&layer.qkv.weight_f32()?, 1, norm)?;
        let cols = crate::pruning::entry_sums(&layer.attn_out.weight_f32()?, 0, norm)?;
        let head_scores: Vec<f32> = (0..layer.heads)
            .map(|h| {
                let s: f32 = (0..3)
                    .flat_map(|j| rows[j * a + h * d..j * a + (h + 1) * d].iter())
                    .chain(cols[h * d..(h + 1) * d].iter())
                    .sum();
                crate::pruning::finish_norm(s, norm)
            })
            .collect();
        let heads = top_indices(&head_scores, kept_count(layer.heads, ratio));
        let dims: Vec<u32> = heads
            .iter()
            .flat_map(|&h| (h as usize * d..(h as usize + 1) * d).map(|i| i as u32))
            .collect();
        let qkv_rows: Vec<u32> = (0..3)
            .flat_map(|j| dims.iter().map(move |&i| (j * a) as u32 + i))
            .collect();
        // Neuron scores: the norm of its up-projection row and down-projection column together.
        let up = crate::pruning::entry_sums(&layer.intermediate.weight_f32()?, 1, norm)?;
        let down = crate::pruning::entry_sums(&layer.output.weight_f32()?, 0, norm)?;
        let neuron_scores: Vec<f32> = up
            .iter()
            .zip(&down)
            .map(|(u, w)| crate::pruning::finish_norm(u + w, norm))
            .collect();
        let neurons = top_indices(&neuron_scores, kept_count(up.len(), ratio));
        layers.push(crate::text::bert::BertLayer {
            heads: heads.len(),
            qkv: crate::pruning::select(&layer.qkv, Some(&qkv_rows), None)?,
            attn_out: crate::pruning::select(&layer.attn_out, None, Some(&dims))?,
            intermediate: crate::pruning::select(&layer.intermediate, Some(&neurons), None)?,
            output: crate::pruning::select(&layer.output, None, Some(&neurons))?,
            ..layer.clone()
        });
    }
    Ok(Bert {
        layers,
        ..bert.clone()
    })
}

/// How a student is distilled from a BERT teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    /// Teacher layers the student starts from (and so its depth).
    pub student_layers: Vec<usize>,
    /// Distillation texts used (one pass).
    pub texts: usize,
    /// Tokens per text.
    pub seq_len: usize,
    /// Texts per optimiser step.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Seed of the text order.
    pub seed: u64,
    /// Loss on the pooled, normalised embeddings: `1 - cosine` (mean over the batch).
    pub loss: String,
}

impl DistillConfig {
    /// The default budget for a `depth`-layer teacher: every other layer from the second
    /// (1/3/5 of 6), 1,536 texts of 128 tokens in batches of 16, lr 5e-4: about 6 minutes on
    /// 2 cores for MiniLM.
    pub fn default_for(depth: usize) -> Self {
        Self {
            student_layers: (1..depth).step_by(2).collect(),
            texts: 1_536,
            seq_len: 128,
            batch_size: 16,
            learning_rate: 5e-4,
            seed: 0,
            loss: "cosine".into(),
        }
    }
}

/// Distils `teacher` into a student of the configured layers (embeddings copied and frozen), trained
/// on `texts` to match the teacher's sentence embeddings. Prints progress to stderr.
pub fn distill_bert(
    teacher: &Bert,
    tokenizer: &mut TextTokenizer,
    texts: &[&str],
    dc: &DistillConfig,
    label: &str,
) -> Result<Bert> {
    if dc.student_layers.is_empty() || dc.student_layers.iter().any(|&i| i >= teacher.layers.len())
    {
        return Err(ModelError::Invalid(format!(
            "student layers {:?} do not fit a teacher of {} layers",
            dc.student_layers,
            teacher.layers.len()
        )));
    }
    let student = Bert {
        layers: dc
            .student_layers
            .iter()
            .map(|&i| teacher.layers[i].clone())
            .collect(),
        ..teacher.clone()
    };
    let frozen = |name: &str| name.starts_with("embeddings.") && !name.contains("LayerNorm");
    let all: BTreeMap<String, Tensor> = student.to_tensors()?.into_iter().collect();
    let mut vars: BTreeMap<String, Var> = BTreeMap::new();
    for (name, t) in all.iter().filter(|(n, _)| !frozen(n)) {
        vars.insert(name.clone(), Var::from_tensor(t)?);
    }
    let current = |vars: &BTreeMap<String, Var>, detach: bool| -> Result<Bert> {
        let mut map: HashMap<String, Tensor> = all
            .iter()
            .filter(|(n, _)| frozen(n))
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        for (n, v) in vars {
            let t = v.as_tensor();
            map.insert(n.clone(), if detach { t.detach() } else { t.clone() });
        }
        Bert::from_tensors(&teacher.config, &map, "distillation")
    };
    let mut optimizer = AdamW::new(
        vars.values().cloned().collect(),
        ParamsAdamW {
            lr: dc.learning_rate,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(dc.seed));
    order.truncate(dc.texts);
    let steps = order.len().div_ceil(dc.batch_size.max(1));
    let start = Instant::now();
    for (step, chunk) in order.chunks(dc.batch_size.max(1)).enumerate() {
        let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
        let input = tokenizer.encode(&batch, Padding::Longest(dc.seq_len))?;
        let target = teacher.embed(&input, false)?.detach();
        let predicted = current(&vars, false)?.embed(&input, true)?;
        let loss = (1.0 - (predicted * target)?.sum(1)?.mean_all()?)?;
        optimizer.backward_step(&loss)?;
        if step % 10 == 0 || step + 1 == steps {
            let elapsed = start.elapsed().as_secs_f64();
            let left = elapsed / (step + 1) as f64 * (steps - step - 1) as f64;
            eprintln!(
                "distilling {label}: step {}/{steps}, loss {:.5}, {elapsed:.0} s elapsed, about {left:.0} s left",
                step + 1,
                loss.to_scalar::<f32>()?
            );
        }
    }
    current(&vars, true)
}
