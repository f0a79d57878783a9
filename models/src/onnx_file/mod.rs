//! A user's own ONNX model (`--models onnx@PATH.onnx`), measured on ONNX Runtime: its inputs
//! read from `--inputs FILE.npz` or generated from the graph's declaration ([`inputs`]), each
//! technique applied to its weight products ([`mod@rewrite`]), quality as the fidelity of every
//! output to the fp32 model's (cosine and largest absolute error) and accuracy when `--labels`
//! are given. slimbench's own engine does not import ONNX graphs: its cells are
//! `not-applicable`.

pub mod inputs;
pub mod rewrite;

use std::path::{Path, PathBuf};

use candle_core::Device;
use prost::Message;

use crate::cache::{sha256_hex, CacheOutcome};
use crate::engine::Engine;
use crate::error::{ModelError, Result};
use crate::family::{MethodText, ModelFamily, PlanDims};
use crate::onnx::linear::OnnxFormat;
use crate::onnx::proto::ModelProto;
use crate::onnx::runtime::OrtModel;
use crate::onnx::workload::{engine_params, OrtWorkload};
use crate::technique::{PostStep, Technique};
use crate::workload::{Built, Footprint, Quality, VariantReport, WorkloadSpec};
use inputs::{declared, from_npz, generate, labels};
use rewrite::{f32_values, rewrite};

/// The prefix of a user's ONNX model in `--models`.
pub const PREFIX: &str = "onnx@";

/// The family of user ONNX models.
pub struct OnnxFile;

/// The file a model name points at, if it is an `onnx@` name.
pub fn path_of(model: &str) -> Option<PathBuf> {
    model.strip_prefix(PREFIX).map(PathBuf::from)
}

/// Reads and decodes the ONNX file of `model`; errors name the file.
pub fn load(model: &str) -> Result<(ModelProto, Vec<u8>)> {
    let path = path_of(model)
        .ok_or_else(|| ModelError::Invalid(format!("{model:?} is not an onnx@PATH model")))?;
    let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
    let proto = ModelProto::decode(bytes.as_slice())
        .map_err(|e| ModelError::Invalid(format!("{}: not an ONNX model: {e}", path.display())))?;
    if proto.graph.is_none() {
        return Err(ModelError::Invalid(format!(
            "{}: the ONNX model has no graph",
            path.display()
        )));
    }
    Ok((proto, bytes))
}

/// The technique's format and one-shot sparsity on a user's graph; training steps need a
/// training set and a loss, which a bare graph does not have.
fn technique_on_graph(technique: &Technique) -> Result<(OnnxFormat, Option<f64>)> {
    if let Some(step) = technique.training_steps().first() {
        return Err(ModelError::NotApplicable(format!(
            "{technique}: {step:?} trains the model; a user's ONNX graph has no training data or \
             loss in slimbench (fp32, int8, q4_0, q4_1 and prune-oneshot-S apply)"
        )));
    }
    let sparsity = match technique.post() {
        Some(PostStep::PruneOneShot { sparsity }) => Some(*sparsity),
        _ => None,
    };
    Ok((OnnxFormat::of(technique)?, sparsity))
}

fn parameters(model: &ModelProto) -> (usize, usize, usize) {
    let graph = model.graph.as_ref();
    let tensors = graph.map(|g| g.initializer.as_slice()).unwrap_or_default();
    let (mut count, mut nonzero, mut bytes) = (0, 0, 0);
    for t in tensors {
        let elems: usize = t.dims.iter().map(|d| (*d).max(0) as usize).product();
        count += elems;
        bytes += t.raw_data.as_ref().map_or(0, Vec::len)
            + t.float_data.len() * 4
            + t.int64_data.len() * 8
            + t.int32_data.len() * 4;
        nonzero += match f32_values(t) {
            Some(v) => v.iter().filter(|x| **x != 0.0).count(),
            None => elems,
        };
    }
    (count, nonzero, bytes)
}

/// Cosine of `a` and `b` per item (rows of `items` equal parts), averaged, and the largest
/// absolute difference.
fn agreement(a: &[f32], b: &[f32], items: usize) -> (f64, f64) {
    let items = items.max(1);
    let width = (a.len() / items).max(1);
    let mut cosines = 0.0;
    for (x, y) in a.chunks(width).zip(b.chunks(width)) {
        let dot: f64 = x
            .iter()
            .zip(y)
            .map(|(p, q)| f64::from(*p) * f64::from(*q))
            .sum();
        let nx: f64 = x.iter().map(|p| f64::from(*p).powi(2)).sum::<f64>().sqrt();
        let ny: f64 = y.iter().map(|q| f64::from(*q).powi(2)).sum::<f64>().sqrt();
        cosines += if nx == 0.0 && ny == 0.0 {
            1.0
        } else {
            dot / (nx * ny).max(f64::MIN_POSITIVE)
        };
    }
    let max_abs = a
        .iter()
        .zip(b)
        .map(|(p, q)| f64::from((p - q).abs()))
        .fold(0.0, f64::max);
    // Rounding can put a cosine of identical outputs a hair above 1.
    let mean = cosines / a.chunks(width).count().max(1) as f64;
    (mean.clamp(-1.0, 1.0), max_abs)
}

fn argmax_rows(values: &[f32], items: usize) -> Vec<u32> {
    let width = (values.len() / items.max(1)).max(1);
    values
        .chunks(width)
        .map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i as u32)
        })
        .collect()
}

impl ModelFamily for OnnxFile {
    fn plan_dims(&self) -> PlanDims {
        PlanDims {
            default_batch_sizes: &[1],
            dimensions: &[],
        }
    }

    fn method(&self) -> MethodText {
        MethodText {
            kind: "user's ONNX model (onnx@PATH), on ONNX Runtime",
            timed_call: "one run of the graph on its inputs (from --inputs, or generated from its declared inputs with the batch size and --dims)",
            quality: "every output's agreement with the fp32 graph's on the same inputs (mean cosine per item, largest absolute difference), and accuracy of the first output's argmax when --labels are given",
        }
    }

    fn prepare(
        &self,
        model: &str,
        _technique: &Technique,
        _cache_dir: &Path,
    ) -> Result<Vec<CacheOutcome>> {
        // Nothing is trained; the file is read now so that a broken one fails before timing.
        load(model)?;
        Ok(Vec::new())
    }

    fn build(&self, spec: &WorkloadSpec, device: &Device) -> Result<Built> {
        let cell = &spec.cell;
        if cell.engine != Engine::Ort {
            return Err(ModelError::NotApplicable(format!(
                "{}: slimbench's own engine does not import ONNX graphs; run it with --engines ort",
                cell.model
            )));
        }
        if !device.is_cpu() {
            return Err(ModelError::NotApplicable(format!(
                "the ort engine runs ONNX Runtime's CPU execution provider, not {}",
                cell.device
            )));
        }
        let (format, sparsity) = technique_on_graph(&cell.technique)?;
        crate::onnx::runtime::init()?;
        let (base, base_bytes) = load(&cell.model)?;
        let declared = declared(&base)?;
        let given = &spec.model_inputs;
        let feed = match &given.inputs {
            Some(path) => {
                let (arrays, batch) = from_npz(path, &declared)?;
                if batch != cell.batch_size {
                    return Err(ModelError::Invalid(format!(
                        "--inputs {}: its arrays hold {batch} items, the cell's batch size is {}; \
                         run it with --batch-sizes {batch}",
                        path.display(),
                        cell.batch_size
                    )));
                }
                arrays
            }
            None => generate(&declared, cell.batch_size, &given.dims)?,
        };
        let rewritten = rewrite(&base, format, sparsity)?;
        let variant = ModelProto::decode(rewritten.bytes.as_slice())
            .map_err(|e| ModelError::Invalid(format!("the rewritten graph: {e}")))?;
        let threads = crate::kernels::thread_count();
        let mut model = OrtModel::new(&rewritten.bytes, threads, feed.clone())?;
        let mut reference = OrtModel::new(&base_bytes, threads, feed)?;
        let names = model.output_names();
        let got = model.run()?;
        let want = reference.run()?;
        let items = cell.batch_size;
        let per_output: Vec<serde_json::Value> = names
            .iter()
            .zip(got.iter().zip(&want))
            .map(|(name, ((_, g), (_, w)))| {
                let (cosine, max_abs) = agreement(g, w, items);
                serde_json::json!({ "output": name, "cosine": cosine, "max_abs_error": max_abs })
            })
            .collect();
        let (cosine, _) = agreement(&got[0].1, &want[0].1, items);
        let quality = match &given.labels {
            Some(path) => {
                let truth = labels(path)?;
                if truth.len() != items {
                    return Err(ModelError::Invalid(format!(
                        "--labels {}: {} labels for {items} items",
                        path.display(),
                        truth.len()
                    )));
                }
                let variant_pred = argmax_rows(&got[0].1, items);
                let base_pred = argmax_rows(&want[0].1, items);
                Quality {
                    metric: "accuracy".into(),
                    value_pct: crate::quality::accuracy_pct(&variant_pred, &truth),
                    baseline_pct: crate::quality::accuracy_pct(&base_pred, &truth),
                    items,
                    fidelity: Some(cosine),
                    language: None,
                    paired: Some(crate::quality::PairedOutcomes::from_correct(
                        &crate::quality::correct(&base_pred, &truth),
                        &crate::quality::correct(&variant_pred, &truth),
                    )),
                }
            }
            None => Quality {
                metric: "output_cosine".into(),
                value_pct: 100.0 * cosine,
                baseline_pct: 100.0,
                items,
                fidelity: Some(cosine),
                language: None,
                paired: None,
            },
        };
        let (parameter_count, nonzero_parameter_count, model_bytes) = parameters(&variant);
        let report = VariantReport {
            footprint: Footprint {
                parameter_count,
                nonzero_parameter_count,
                model_bytes,
            },
            technique_params: serde_json::json!({
                "engine": engine_params(format, threads)?,
                "model_file": path_of(&cell.model),
                "model_sha256": sha256_hex(&base_bytes),
                "inputs": given.inputs.as_ref().map_or_else(
                    || serde_json::json!({ "generated": { "seed": inputs::INPUT_SEED, "dims": given.dims } }),
                    |p| serde_json::json!({ "npz": p }),
                ),
                "changed_nodes": rewritten.changed,
                "left_nodes": rewritten.left,
                "quality_per_output": per_output,
                "one_shot_sparsity": sparsity,
            }),
            layers: rewritten.layers,
            flops_per_item: None,
        };
        Ok(OrtWorkload::built(model, cell.batch_size, quality, report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_of_equal_outputs_is_one_at_most_and_a_difference_shows_in_both_figures() {
        let a: Vec<f32> = (0..384).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
        let (cosine, max_abs) = agreement(&a, &a, 1);
        assert!(cosine <= 1.0 && cosine > 1.0 - 1e-12, "{cosine}");
        assert_eq!(max_abs, 0.0);
        let mut b = a.clone();
        b[0] += 10.0;
        let (cosine, max_abs) = agreement(&a, &b, 2);
        assert!(cosine < 1.0);
        assert_eq!(max_abs, 10.0);
        assert_eq!(argmax_rows(&[0.1, 0.9, 0.5, 0.2], 2), vec![1, 0]);
    }
}
