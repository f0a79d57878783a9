//! Pruning. Unstructured: the smallest-magnitude weights (not biases) of every fully connected and
//! convolution layer are set to zero, per layer or over the whole network, to an exact sparsity,
//! with masks that a fine-tune keeps. Structured: whole hidden neurons (MLP) or convolution channels
//! (CNN) with the smallest L1 or L2 norm are removed, so the dense layers get smaller.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::digits::net::{Network, IMAGE_SIDE};
use crate::digits::train::Masks;
use crate::error::{ModelError, Result};
use crate::pruning::{kept_count, top_indices, zero_smallest, Norm, Scope};

fn is_weight(name: &str) -> bool {
    name.ends_with(".weight")
}

/// Prunes `net` to `sparsity` (0..1) of its weights by magnitude; returns the pruned network and
/// the masks of the pruned weights.
pub fn prune_unstructured(net: &Network, sparsity: f64, scope: Scope) -> Result<(Network, Masks)> {
    if !(0.0..1.0).contains(&sparsity) {
        return Err(ModelError::Invalid(format!(
            "sparsity {sparsity} is outside 0..1"
        )));
    }
    let tensors = net.to_tensors()?;
    let mut names: Vec<&String> = tensors.keys().filter(|n| is_weight(n)).collect();
    names.sort();
    let mut values: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for name in &names {
        let t = &tensors[*name];
        values.insert(
            (*name).clone(),
            (t.dims().to_vec(), t.flatten_all()?.to_vec1::<f32>()?),
        );
    }
    let mut masks: HashMap<String, Vec<f32>> = HashMap::new();
    match scope {
        Scope::PerLayer => {
            for (name, (_, v)) in values.iter_mut() {
                let k = (sparsity * v.len() as f64).round() as usize;
                masks.insert(name.clone(), zero_smallest(v, k));
            }
        }
        Scope::Global => {
            // Concatenate in name order, prune, split back.
            let mut all = Vec::new();
            for name in &names {
                all.extend_from_slice(&values[*name].1);
            }
            let k = (sparsity * all.len() as f64).round() as usize;
            let mask_all = zero_smallest(&mut all, k);
            let mut offset = 0;
            for name in &names {
                let entry = values.get_mut(*name).ok_or_else(|| {
                    ModelError::Invalid(format!("weight {name} vanished while pruning"))
                })?;
                let n = entry.1.len();
                entry.1.copy_from_slice(&all[offset..offset + n]);
                masks.insert((*name).clone(), mask_all[offset..offset + n].to_vec());
                offset += n;
            }
        }
    }
    let mut pruned = tensors.clone();
    let mut mask_tensors = Masks::new();
    for (name, (shape, v)) in values {
        pruned.insert(
            name.clone(),
            Tensor::from_vec(v, shape.as_slice(), &Device::Cpu)?,
        );
        let m = masks.remove(&name).unwrap_or_default();
        mask_tensors.insert(name, Tensor::from_vec(m, shape.as_slice(), &Device::Cpu)?);
    }
    Ok((Network::from_tensors(&pruned, "pruning")?, mask_tensors))
}

fn norms(rows: &[Vec<f32>], norm: Norm) -> Vec<f32> {
    rows.iter()
        .map(|r| match norm {
            Norm::L1 => r.iter().map(|v| v.abs()).sum(),
            Norm::L2 => r.iter().map(|v| v * v).sum::<f32>().sqrt(),
        })
        .collect()
}

fn index(kept: &[u32]) -> Result<Tensor> {
    Ok(Tensor::new(kept, &Device::Cpu)?)
}

/// Removes `ratio` (0..1) of the hidden neurons of each hidden layer (an MLP) or of the channels of
/// each convolution (a CNN), those with the smallest `norm` of their incoming weights.
pub fn prune_structured(net: &Network, ratio: f64, norm: Norm) -> Result<Network> {
    if !(0.0..1.0).contains(&ratio) {
        return Err(ModelError::Invalid(format!(
            "ratio {ratio} is outside 0..1"
        )));
    }
    let mut t = net.to_tensors()?;
    let get = |t: &HashMap<String, Tensor>, k: &str| -> Result<Tensor> {
        t.get(k)
            .cloned()
            .ok_or_else(|| ModelError::Invalid(format!("missing tensor {k}")))
    };
    if !net.convs.is_empty() {
        let n_convs = net.convs.len();
        for i in 0..n_convs {
            let w = get(&t, &format!("conv{i}.weight"))?;
            let out = w.dims()[0];
            let rows = w.flatten_from(1)?.to_vec2::<f32>()?;
            let kept = top_indices(&norms(&rows, norm), kept_count(out, ratio));
            let idx = index(&kept)?;
            t.insert(format!("conv{i}.weight"), w.index_select(&idx, 0)?);
            let b = get(&t, &format!("conv{i}.bias"))?;
            t.insert(format!("conv{i}.bias"), b.index_select(&idx, 0)?);
            if i + 1 < n_convs {
                let next = get(&t, &format!("conv{}.weight", i + 1))?;
                t.insert(format!("conv{}.weight", i + 1), next.index_select(&idx, 1)?);
            } else {
                // The head reads the pooled map channel-major: channel c owns 16 columns.
                let per = (IMAGE_SIDE / 2) * (IMAGE_SIDE / 2);
                let cols: Vec<u32> = kept
                    .iter()
                    .flat_map(|&c| (0..per as u32).map(move |p| c * per as u32 + p))
                    .collect();
                let head = get(&t, "layers.0.weight")?;
                t.insert(
                    "layers.0.weight".into(),
                    head.index_select(&index(&cols)?, 1)?,
                );
            }
        }
    } else {
        let n_dense = net.dense.len();
        for i in 0..n_dense.saturating_sub(1) {
            let w = get(&t, &format!("layers.{i}.weight"))?;
            let rows = w.to_vec2::<f32>()?;
            let kept = top_indices(&norms(&rows, norm), kept_count(rows.len(), ratio));
            let idx = index(&kept)?;
            t.insert(format!("layers.{i}.weight"), w.index_select(&idx, 0)?);
            let b = get(&t, &format!("layers.{i}.bias"))?;
            t.insert(format!("layers.{i}.bias"), b.index_select(&idx, 0)?);
            let next = get(&t, &format!("layers.{}.weight", i + 1))?;
            t.insert(
                format!("layers.{}.weight", i + 1),
                next.index_select(&idx, 1)?,
            );
        }
    }
    Network::from_tensors(&t, "structured pruning")
}
