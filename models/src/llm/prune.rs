//! Structured pruning of a language model, without fine-tuning: feed-forward neurons ranked by
//! the norm of the weights that read and write them, the same ratio in every block.

use crate::error::{ModelError, Result};
use crate::llm::model::{Llama, LlamaBlock};
use crate::pruning::{entry_sums, finish_norm, kept_count, select, top_indices, Norm};

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
