//! A technique applied to a user's ONNX graph: every `MatMul` whose second input is a 2-D f32
//! initializer, and every `Gemm` with an initializer weight (alpha and beta 1, A not
//! transposed), is written again in the technique's ONNX format (the same writer as slimbench's
//! own models), its output renamed back; the old weights are dropped. One-shot pruning zeroes
//! the smallest weights of each such matrix. Convolutions are left f32 (ONNX Runtime's
//! `MatMulNBits` has no convolution form); the result lists every node changed and every one
//! left, with why.

use std::collections::{HashMap, HashSet};

use prost::Message;

use crate::error::{ModelError, Result};
use crate::layer::LayerReport;
use crate::onnx::graph::{GraphBuilder, MICROSOFT, MICROSOFT_OPSET};
use crate::onnx::linear::OnnxFormat;
use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::proto::{ModelProto, NodeProto, OperatorSetIdProto, TensorProto};
use crate::onnx::workload::LinearValues;

/// The opset that has `DynamicQuantizeLinear` (int8 dynamic needs it).
const DYNAMIC_QUANTIZE_OPSET: i64 = 11;

/// The graph after a technique, and what it changed.
#[derive(Debug, Clone)]
pub struct Rewritten {
    /// The model's bytes.
    pub bytes: Vec<u8>,
    /// The nodes written again (`MatMul`/`Gemm` names, or their output's where unnamed).
    pub changed: Vec<String>,
    /// The weight nodes left as they were, each with why.
    pub left: Vec<String>,
    /// One report per weight node changed.
    pub layers: Vec<LayerReport>,
}

/// The f32 values of an initializer (raw little-endian data or `float_data`).
pub fn f32_values(t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type != Some(DataType::Float as i32) {
        return None;
    }
    match &t.raw_data {
        Some(raw) if !raw.is_empty() => Some(
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        _ if !t.float_data.is_empty() => Some(t.float_data.clone()),
        _ => None,
    }
}

fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
        .and_then(|a| a.i)
        .unwrap_or(default)
}

fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
        .and_then(|a| a.f)
        .unwrap_or(default)
}

/// A weight node's Linear: its name, the weight `out x in` and the bias, or why not.
fn linear_of(
    node: &NodeProto,
    initializers: &HashMap<&str, &TensorProto>,
) -> std::result::Result<LinearValues, String> {
    let op = node.op_type.as_deref().unwrap_or_default();
    let name = node
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| node.output.first().cloned())
        .unwrap_or_default();
    let weight = node
        .input
        .get(1)
        .and_then(|w| initializers.get(w.as_str()))
        .ok_or_else(|| format!("{op} {name}: its weight is not an initializer"))?;
    let values =
        f32_values(weight).ok_or_else(|| format!("{op} {name}: its weight is not f32 data"))?;
    if weight.dims.len() != 2 {
        return Err(format!("{op} {name}: its weight is not a matrix"));
    }
    let (rows, cols) = (weight.dims[0] as usize, weight.dims[1] as usize);
    let transpose = |v: &[f32], r: usize, c: usize| {
        let mut t = vec![0.0; v.len()];
        for i in 0..r {
            for j in 0..c {
                t[j * r + i] = v[i * c + j];
            }
        }
        t
    };
    match op {
        // B is in x out: the Linear's weight is its transpose.
        "MatMul" => Ok(LinearValues {
            name,
            out: cols,
            inputs: rows,
            weight: transpose(&values, rows, cols),
            bias: Vec::new(),
        }),
        "Gemm" => {
            if attr_i(node, "transA", 0) != 0
                || attr_f(node, "alpha", 1.0) != 1.0
                || attr_f(node, "beta", 1.0) != 1.0
            {
                return Err(format!(
                    "Gemm {name}: transA, alpha or beta other than the plain product"
                ));
            }
            let (out, inputs, weight) = if attr_i(node, "transB", 0) != 0 {
                (rows, cols, values)
            } else {
                (cols, rows, transpose(&values, rows, cols))
            };
            let bias = match node.input.get(2).filter(|c| !c.is_empty()) {
                None => Vec::new(),
                Some(c) => {
                    let t = initializers
                        .get(c.as_str())
                        .ok_or_else(|| format!("Gemm {name}: its bias is not an initializer"))?;
                    let b = f32_values(t).ok_or_else(|| format!("Gemm {name}: bias not f32"))?;
                    if b.len() != out {
                        return Err(format!(
                            "Gemm {name}: its bias is broadcast, not one a column"
                        ));
                    }
                    b
                }
            };
            Ok(LinearValues {
                name,
                out,
                inputs,
                weight,
                bias,
            })
        }
        _ => Err(format!("{op} {name}: not a weight product")),
    }
}

/// Zeroes the `sparsity` fraction of smallest-magnitude weights of `w` (ties kept together).
fn prune_smallest(w: &mut [f32], sparsity: f64) {
    let k = ((w.len() as f64) * sparsity).floor() as usize;
    if k == 0 {
        return;
    }
    let mut magnitudes: Vec<f32> = w.iter().map(|v| v.abs()).collect();
    magnitudes.sort_by(f32::total_cmp);
    let threshold = magnitudes[k - 1];
    let mut zeroed = 0;
    for v in w.iter_mut() {
        if v.abs() <= threshold && zeroed < k {
            *v = 0.0;
            zeroed += 1;
        }
    }
}

fn opset(model: &ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|o| {
            o.domain.as_deref().unwrap_or_default().is_empty()
                || o.domain.as_deref() == Some("ai.onnx")
        })
        .and_then(|o| o.version)
        .unwrap_or(1)
}

/// `model` with every weight product in `format` (and its weights pruned to `sparsity` first,
/// for one-shot pruning). f32 without pruning leaves the graph as it is.
pub fn rewrite(model: &ModelProto, format: OnnxFormat, sparsity: Option<f64>) -> Result<Rewritten> {
    let mut model = model.clone();
    if format == OnnxFormat::Int8Dynamic && opset(&model) < DYNAMIC_QUANTIZE_OPSET {
        return Err(ModelError::NotApplicable(format!(
            "the model's opset {} predates DynamicQuantizeLinear (opset {DYNAMIC_QUANTIZE_OPSET})",
            opset(&model)
        )));
    }
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| ModelError::Invalid("the ONNX model has no graph".into()))?;
    let unchanged = format == OnnxFormat::F32 && sparsity.is_none();
    let mut nodes = Vec::with_capacity(graph.node.len());
    let mut added = Vec::new();
    let mut domains: HashSet<String> = HashSet::new();
    let (mut changed, mut left, mut layers) = (Vec::new(), Vec::new(), Vec::new());
    let mut dropped: HashSet<String> = HashSet::new();
    {
        let initializers: HashMap<&str, &TensorProto> = graph
            .initializer
            .iter()
            .filter_map(|t| t.name.as_deref().map(|n| (n, t)))
            .collect();
        for (i, node) in graph.node.iter().enumerate() {
            let op = node.op_type.as_deref().unwrap_or_default();
            let is_product = node.domain.as_deref().unwrap_or_default().is_empty()
                && (op == "MatMul" || op == "Gemm");
            if !is_product {
                if op == "Conv" {
                    left.push(format!(
                        "Conv {}: convolutions stay f32 (no 4-bit or dynamic int8 form written)",
                        node.name.as_deref().unwrap_or_default()
                    ));
                }
                nodes.push(node.clone());
                continue;
            }
            let mut linear = match linear_of(node, &initializers) {
                Ok(l) => l,
                Err(why) => {
                    left.push(why);
                    nodes.push(node.clone());
                    continue;
                }
            };
            if unchanged {
                nodes.push(node.clone());
                continue;
            }
            if let Some(s) = sparsity {
                prune_smallest(&mut linear.weight, s);
            }
            let mut g = GraphBuilder::with_prefix(&format!("slimbench_{i}_"));
            let out = linear.emit(&mut g, &node.input[0], format);
            let (mut new_nodes, inits, used) = g.into_parts();
            new_nodes.push(NodeProto {
                input: vec![out],
                output: vec![node.output[0].clone()],
                op_type: Some("Identity".into()),
                name: Some(format!("slimbench_{i}_rename")),
                ..Default::default()
            });
            nodes.extend(new_nodes);
            added.extend(inits);
            domains.extend(used);
            dropped.extend(node.input.iter().skip(1).cloned());
            layers.push(linear.report(format));
            changed.push(linear.name);
        }
    }
    // Drop the replaced weights that nothing else reads.
    let still_read: HashSet<&String> = nodes.iter().flat_map(|n| n.input.iter()).collect();
    let gone: HashSet<String> = dropped
        .into_iter()
        .filter(|n| !still_read.contains(n))
        .collect();
    graph.node = nodes;
    graph
        .initializer
        .retain(|t| !gone.contains(t.name.as_deref().unwrap_or_default()));
    graph.initializer.extend(added);
    graph
        .input
        .retain(|i| !gone.contains(i.name.as_deref().unwrap_or_default()));
    for domain in domains {
        if !model
            .opset_import
            .iter()
            .any(|o| o.domain.as_deref() == Some(domain.as_str()))
        {
            model.opset_import.push(OperatorSetIdProto {
                domain: Some(domain),
                version: Some(MICROSOFT_OPSET),
            });
        }
    }
    debug_assert!(MICROSOFT.starts_with("com."));
    Ok(Rewritten {
        bytes: model.encode_to_vec(),
        changed,
        left,
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_pruning_zeroes_the_smallest_magnitudes_and_no_more() {
        let mut w = vec![0.5, -0.1, 0.3, -0.05, 0.9, 0.2];
        prune_smallest(&mut w, 0.5);
        assert_eq!(w, vec![0.5, 0.0, 0.3, 0.0, 0.9, 0.0]);
    }
}
