//! What pruning shares across model families: where a magnitude threshold is taken, the norm that
//! ranks neurons, channels or heads, how many units survive a ratio, which, and the layer that
//! keeps only them.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::layer::DenseLayer;

/// Where the magnitude threshold of unstructured pruning is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Each layer loses the same fraction of its weights.
    PerLayer,
    /// One threshold over all weights: layers lose different fractions.
    Global,
}

/// The norm that ranks neurons or channels in structured pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// Sum of absolute values.
    L1,
    /// Euclidean norm.
    L2,
}

/// How many of `total` units survive removing `ratio` of them: rounded, at least one.
pub fn kept_count(total: usize, ratio: f64) -> usize {
    ((total as f64 * (1.0 - ratio)).round() as usize).clamp(1, total.max(1))
}

/// Indices of the `keep` largest scores (ties to the lower index), ascending.
pub fn top_indices(scores: &[f32], keep: usize) -> Vec<u32> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut kept: Vec<u32> = order.into_iter().take(keep).map(|i| i as u32).collect();
    kept.sort();
    kept
}

/// Zeroes the `k` smallest-magnitude entries of `values` (ties by position), returning the mask
/// (0 where zeroed, 1 elsewhere).
pub fn zero_smallest(values: &mut [f32], k: usize) -> Vec<f32> {
    let k = k.min(values.len());
    let mut mask = vec![1.0f32; values.len()];
    if k == 0 {
        return mask;
    }
    let mut order: Vec<usize> = (0..values.len()).collect();
    // A total order (magnitude, then position), so the `k` smallest are one set however found.
    order.select_nth_unstable_by(k - 1, |&a, &b| {
        values[a].abs().total_cmp(&values[b].abs()).then(a.cmp(&b))
    });
    for &i in &order[..k] {
        values[i] = 0.0;
        mask[i] = 0.0;
    }
    mask
}

/// `layer` with the `sparsity` fraction of its weights of smallest magnitude set to zero:
/// exactly `round(sparsity x weights)` of them, by [`zero_smallest`]; the result is dense f32.
pub fn magnitude_pruned(layer: &DenseLayer, sparsity: f64) -> Result<DenseLayer> {
    let weight = layer.weight_f32()?;
    let mut values = weight.flatten_all()?.to_vec1::<f32>()?;
    let zeroed = (values.len() as f64 * sparsity).round() as usize;
    zero_smallest(&mut values, zeroed);
    let pruned = Tensor::from_vec(values, weight.shape(), weight.device())?;
    DenseLayer::from_f32(layer.name.clone(), &pruned, layer.bias.clone())
}

/// Sums of |w| (L1) or w^2 (L2) along `dim`: norms before the final root, so they add up.
pub fn entry_sums(t: &Tensor, dim: usize, norm: Norm) -> Result<Vec<f32>> {
    let v = match norm {
        Norm::L1 => t.abs()?.sum(dim)?,
        Norm::L2 => t.sqr()?.sum(dim)?,
    };
    Ok(v.to_vec1::<f32>()?)
}

/// The norm of a unit from its summed [`entry_sums`] (the root for L2).
pub fn finish_norm(sum: f32, norm: Norm) -> f32 {
    match norm {
        Norm::L1 => sum,
        Norm::L2 => sum.sqrt(),
    }
}

/// The layer keeping only output `rows` and input `cols` (all where `None`), as f32.
pub fn select(lin: &DenseLayer, rows: Option<&[u32]>, cols: Option<&[u32]>) -> Result<DenseLayer> {
    let dev = &candle_core::Device::Cpu;
    let mut w = lin.weight_f32()?;
    let mut b = lin.bias.clone();
    if let Some(rows) = rows {
        let idx = Tensor::new(rows, dev)?;
        w = w.index_select(&idx, 0)?;
        b = b.index_select(&idx, 0)?;
    }
    if let Some(cols) = cols {
        w = w.index_select(&Tensor::new(cols, dev)?, 1)?;
    }
    DenseLayer::from_f32(lin.name.clone(), &w.contiguous()?, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn magnitude_pruning_zeroes_exactly_the_smallest_weights() {
        let values = vec![0.5f32, -0.1, 0.3, -0.9, 0.2, 0.05];
        let w = Tensor::from_vec(values.clone(), (2, 3), &Device::Cpu).unwrap();
        let b = Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap();
        let layer = DenseLayer::from_f32("l", &w, b).unwrap();
        let weights = |l: &DenseLayer| {
            l.weight_f32()
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let half = magnitude_pruned(&layer, 0.5).unwrap();
        assert_eq!(weights(&half), [0.5, 0.0, 0.3, -0.9, 0.0, 0.0]);
        assert_eq!(
            (half.format(), half.weight_sparsity().unwrap()),
            ("f32", 0.5)
        );
        assert_eq!(weights(&magnitude_pruned(&layer, 0.01).unwrap()), values);
    }
}
