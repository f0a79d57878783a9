//! Pruning of a language model, without fine-tuning: feed-forward neurons and whole key/value
//! groups ranked by the norm of the weights that read and write them (the same ratio in every
//! block), and whole blocks dropped by their influence on the hidden state.

use crate::error::{ModelError, Result};
use crate::llm::infer::block_influence;
use crate::llm::model::{Llama, LlamaBlock};
use crate::pruning::{entry_sums, finish_norm, kept_count, select, top_indices, Norm};

/// Removes `ratio` of the key/value groups (each key/value head with the query heads it serves)
/// and of the feed-forward neurons of every block (rounded, at least one of each kept), ranked by
/// the `norm` of every weight that reads or writes them: a group's query, key and value rows and
/// its attention-output columns; a neuron's gate and up rows and its down column.
pub fn prune_structured(model: &Llama, ratio: f64, norm: Norm) -> Result<Llama> {
    let ffn_pruned = prune_ffn(model, ratio, norm)?;
    let hd = model.config.head_dim();
    let mut blocks = Vec::new();
    for block in &ffn_pruned.blocks {
        let (heads, kv_heads) = (block.heads(hd), block.kv_heads(hd));
        let group = heads / kv_heads;
        let (q_width, kv_width) = (heads * hd, kv_heads * hd);
        let rows = entry_sums(&block.qkv.weight_f32()?, 1, norm)?;
        let cols = entry_sums(&block.attn_out.weight_f32()?, 0, norm)?;
        let q_rows = |g: usize| g * group * hd..(g + 1) * group * hd;
        let k_rows = |g: usize| q_width + g * hd..q_width + (g + 1) * hd;
        let v_rows = |g: usize| q_width + kv_width + g * hd..q_width + kv_width + (g + 1) * hd;
        let scores: Vec<f32> = (0..kv_heads)
            .map(|g| {
                let s: f32 = q_rows(g)
                    .chain(k_rows(g))
                    .chain(v_rows(g))
                    .map(|r| rows[r])
                    .chain(q_rows(g).map(|c| cols[c]))
                    .sum();
                finish_norm(s, norm)
            })
            .collect();
        let kept = top_indices(&scores, kept_count(kv_heads, ratio));
        let pick = |range: &dyn Fn(usize) -> std::ops::Range<usize>| -> Vec<u32> {
            kept.iter()
                .flat_map(|&g| range(g as usize).map(|i| i as u32))
                .collect()
        };
        let q: Vec<u32> = pick(&q_rows);
        let qkv_rows: Vec<u32> = q
            .iter()
            .copied()
            .chain(pick(&k_rows))
            .chain(pick(&v_rows))
            .collect();
        blocks.push(LlamaBlock {
            qkv: select(&block.qkv, Some(&qkv_rows), None)?,
            attn_out: select(&block.attn_out, None, Some(&q))?,
            ..block.clone()
        });
    }
    Ok(Llama {
        blocks,
        ..ffn_pruned
    })
}

/// Removes the `count` blocks whose [`block_influence`] on `calibration` tokens is least; at
/// least one block is kept.
pub fn drop_layers(
    model: &Llama,
    count: usize,
    calibration: &[u32],
) -> Result<(Llama, Vec<usize>)> {
    let n = model.blocks.len();
    if count >= n {
        return Err(ModelError::Invalid(format!(
            "prune-layers-{count}: the model has {n} blocks; at most {} can be dropped",
            n - 1
        )));
    }
    let influence = block_influence(model, calibration)?;
    let scores: Vec<f32> = influence.iter().map(|v| -(*v as f32)).collect();
    let mut dropped: Vec<usize> = top_indices(&scores, count)
        .into_iter()
        .map(|i| i as usize)
        .collect();
    dropped.sort();
    let blocks = model
        .blocks
        .iter()
        .enumerate()
        .filter(|(i, _)| !dropped.contains(i))
        .map(|(_, b)| b.clone())
        .collect();
    Ok((
        Llama {
            blocks,
            ..model.clone()
        },
        dropped,
    ))
}

/// Removes `ratio` of the feed-forward neurons of every block (at least one kept), ranked by the
/// `norm` of each neuron's gate and up rows and its down column together.
pub fn prune_ffn(model: &Llama, ratio: f64, norm: Norm) -> Result<Llama> {
    if !(0.0..1.0).contains(&ratio) {
        return Err(ModelError::Invalid(format!(
            "ratio {ratio} is outside 0..1"
        )));
    }
    let mut blocks = Vec::new();
    for block in &model.blocks {
        let ffn = block.ffn_width();
        let rows = entry_sums(&block.gate_up.weight_f32()?, 1, norm)?;
        let cols = entry_sums(&block.down.weight_f32()?, 0, norm)?;
        let scores: Vec<f32> = (0..ffn)
            .map(|i| finish_norm(rows[i] + rows[ffn + i] + cols[i], norm))
            .collect();
        let kept = top_indices(&scores, kept_count(ffn, ratio));
        let gate_up_rows: Vec<u32> = kept
            .iter()
            .copied()
            .chain(kept.iter().map(|i| i + ffn as u32))
            .collect();
        blocks.push(LlamaBlock {
            gate_up: select(&block.gate_up, Some(&gate_up_rows), None)?,
            down: select(&block.down, None, Some(&kept))?,
            ..block.clone()
        });
    }
    Ok(Llama {
        blocks,
        ..model.clone()
    })
}
