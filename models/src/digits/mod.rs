//! The digits family: small networks (an MLP and a CNN) trained here from a fixed seed on the
//! embedded UCI digits, judged by accuracy on the held-out split.

pub mod cnn;
pub mod data;
pub mod distill;
pub mod mlp;
pub mod net;
pub mod onnx;
pub mod prune;
pub mod train;
pub mod workload;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::cache::{entry_path, load_or_build, sha256_hex};
use crate::error::{ModelError, Result};
use crate::family::{Base, Family, MethodText, PlanDims, StepRef, Variant, WeightTensors};
use crate::layer::{DenseLayer, LayerReport};
use crate::linears::Linears;
use crate::technique::TrainingStep;
use crate::workload::{Built, WorkloadSpec};
use data::{digits_split, DIGITS_CSV_GZ};
use distill::{distill, train_control, DEFAULT_ALPHA, DEFAULT_TEMPERATURE};
use net::{NetSpec, Network};
use prune::{prune_structured, prune_unstructured};
use train::{train, TrainConfig};

/// The digits models, with a one-line description.
pub const MODELS: &[(&str, &str)] = &[
    (
        mlp::NAME,
        "MLP 64-256-128-10 on the UCI digits (8x8 images), 50,826 parameters, trained here from a fixed seed",
    ),
    (
        cnn::NAME,
        "CNN conv3x3(8)-conv3x3(16)-maxpool-linear on the UCI digits, 3,818 parameters, trained here from a fixed seed",
    ),
];

/// The digits family (see [`Family`]).
pub struct Digits;

/// The shapes (teacher, default student) and training budget of a digits model.
fn model_setup(model: &str) -> Result<(NetSpec, NetSpec, TrainConfig)> {
    match model {
        mlp::NAME => Ok((mlp::spec(), mlp::student_spec(), mlp::train_config())),
        cnn::NAME => Ok((cnn::spec(), cnn::student_spec(), cnn::train_config())),
        other => Err(ModelError::Invalid(format!(
            "{other:?} is not a digits model; digits models: {}, {}",
            mlp::NAME,
            cnn::NAME
        ))),
    }
}

/// How a model (and its distilled student) is trained.
pub fn train_config(model: &str) -> Result<TrainConfig> {
    Ok(model_setup(model)?.2)
}

/// Fine-tune after pruning: half the model's training epochs at learning rate 1e-3.
pub fn finetune_config(model: &str) -> Result<TrainConfig> {
    let tc = train_config(model)?;
    Ok(TrainConfig {
        epochs: (tc.epochs / 2).max(1),
        learning_rate: 1e-3,
        ..tc
    })
}

/// Training of a student (distilled or control): twice the teacher's epochs, since a small
/// network needs more passes to converge; the control gets exactly the same budget.
pub fn student_config(model: &str) -> Result<TrainConfig> {
    let tc = train_config(model)?;
    Ok(TrainConfig {
        epochs: tc.epochs * 2,
        ..tc
    })
}

fn base_key(model: &str) -> Result<String> {
    let (spec, _, tc) = model_setup(model)?;
    Ok(serde_json::json!({
        "model": model,
        "spec": spec,
        "train": tc,
        "data_sha256": sha256_hex(DIGITS_CSV_GZ),
        "format": 2,
    })
    .to_string())
}

/// The cache entry of a model's trained base weights.
pub fn base_weights_path(model: &str, cache_dir: &Path) -> Result<std::path::PathBuf> {
    Ok(entry_path(cache_dir, model, &base_key(model)?))
}

impl Family for Digits {
    type Model = Network;
    type Source = ();

    fn plan_dims(&self) -> PlanDims {
        PlanDims {
            default_batch_sizes: &[1, 32],
            dimensions: &[],
        }
    }

    fn method(&self) -> MethodText {
        MethodText {
            kind: "image classifier of 8x8 digits",
            timed_call: "one forward pass over a batch of held-out images",
            quality: "accuracy on the held-out split (images no variant trained on), against the uncompressed model on the same images",
        }
    }

    fn cache_stem(&self, model: &str) -> String {
        model.to_string()
    }

    fn load_base(&self, model: &str, cache_dir: &Path) -> Result<Base<Network, ()>> {
        let (spec, _, tc) = model_setup(model)?;
        let path = base_weights_path(model, cache_dir)?;
        let (tensors, outcome) = load_or_build(&path, || {
            let (train_set, _) = digits_split()?;
            train(&Network::init(&spec, tc.seed)?, &train_set, &tc, None, None)?.to_tensors()
        })?;
        Ok(Base {
            model: Network::from_tensors(&tensors, &path.display().to_string())?,
            source: (),
            key: base_key(model)?,
            outcome: Some(outcome),
        })
    }

    fn step_params(
        &self,
        model: &str,
        step: StepRef<'_>,
        _current: &Network,
    ) -> Result<serde_json::Value> {
        Ok(match step {
            StepRef::Training(
                TrainingStep::PruneUnstructured { .. } | TrainingStep::PruneStructured { .. },
            ) => serde_json::json!({ "finetune": finetune_config(model)? }),
            StepRef::Training(TrainingStep::DropLayers { .. }) => serde_json::json!({}),
            StepRef::Training(TrainingStep::Distill { .. }) => {
                let (_, student, _) = model_setup(model)?;
                serde_json::json!({
                    "student": student,
                    "temperature": DEFAULT_TEMPERATURE,
                    "alpha": DEFAULT_ALPHA,
                    "train": student_config(model)?,
                })
            }
            StepRef::Post(_) => serde_json::json!({}),
        })
    }

    fn train(
        &self,
        model: &str,
        step: &TrainingStep,
        current: &Network,
        _base: &Base<Network, ()>,
    ) -> Result<Network> {
        let (train_set, _) = digits_split()?;
        match step {
            TrainingStep::PruneUnstructured { sparsity, scope } => {
                let (pruned, masks) = prune_unstructured(current, *sparsity, *scope)?;
                train(
                    &pruned,
                    &train_set,
                    &finetune_config(model)?,
                    Some(&masks),
                    None,
                )
            }
            TrainingStep::PruneStructured { ratio, norm } => {
                let pruned = prune_structured(current, *ratio, *norm)?;
                train(&pruned, &train_set, &finetune_config(model)?, None, None)
            }
            TrainingStep::DropLayers { .. } => Err(ModelError::NotApplicable(
                "prune-layers-N removes transformer blocks; a digits network has none (use prune-structured-R)"
                    .into(),
            )),
            TrainingStep::Distill { control } => {
                let (_, student, _) = model_setup(model)?;
                let tc = student_config(model)?;
                if *control {
                    train_control(&student, &train_set, &tc)
                } else {
                    distill(
                        current,
                        &student,
                        &train_set,
                        &tc,
                        DEFAULT_TEMPERATURE,
                        DEFAULT_ALPHA,
                    )
                }
            }
        }
    }

    fn workload(
        &self,
        spec: &WorkloadSpec,
        device: &Device,
        variant: Variant<Network, ()>,
    ) -> Result<Built> {
        workload::build(spec, device, variant)
    }

    fn ort_workload(&self, spec: &WorkloadSpec, variant: Variant<Network, ()>) -> Result<Built> {
        onnx::build(spec, variant)
    }
}

impl WeightTensors for Network {
    fn to_tensors(&self) -> Result<HashMap<String, Tensor>> {
        Network::to_tensors(self)
    }

    fn with_tensors(&self, tensors: &HashMap<String, Tensor>, origin: &str) -> Result<Self> {
        Network::from_tensors(tensors, origin)
    }
}

impl Linears for Network {
    fn linear_in_dims(&self) -> Vec<usize> {
        self.dense.iter().map(|l| l.in_dim).collect()
    }

    fn map_linears(&self, f: &mut dyn FnMut(&DenseLayer) -> Result<DenseLayer>) -> Result<Self> {
        Ok(Network {
            convs: self.convs.clone(),
            dense: self.dense.iter().map(f).collect::<Result<Vec<_>>>()?,
        })
    }

    fn layer_reports(
        &self,
        note: &dyn Fn(&DenseLayer) -> Option<String>,
    ) -> Result<Vec<LayerReport>> {
        let mut out = self
            .convs
            .iter()
            .map(net::ConvLayer::report)
            .collect::<Result<Vec<_>>>()?;
        out.extend(self.dense.iter().map(|l| l.report(note(l))));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    //! The post-training steps of [`crate::linears`] on digits networks.
    use super::*;
    use crate::kernels::blocks::BlockFormat;
    use crate::linears::{apply_post_step, quantize};
    use crate::technique::{HalfType, PostStep, Technique};
    use candle_core::{Device, Tensor};

    fn mlp_with_widths(widths: &[usize]) -> Network {
        let dense = widths
            .windows(2)
            .enumerate()
            .map(|(i, p)| {
                let w = Tensor::randn(0f32, 1.0, (p[1], p[0]), &Device::Cpu).unwrap();
                let b = Tensor::zeros(p[1], candle_core::DType::F32, &Device::Cpu).unwrap();
                DenseLayer::from_f32(format!("layers.{i}"), &w, b).unwrap()
            })
            .collect();
        Network {
            convs: vec![],
            dense,
        }
    }

    #[test]
    fn k_quant_falls_back_per_layer_and_says_why() {
        let mlp = mlp_with_widths(&[64, 256, 10]);
        let q = quantize(&mlp, BlockFormat::Q4K).unwrap();
        assert_eq!(q.layers[0].format, "q4_1");
        assert!(q.layers[0]
            .note
            .as_deref()
            .unwrap()
            .contains("fell back to q4_1"));
        assert_eq!(q.layers[1].format, "q4k");
        assert!(q.layers[1].note.is_none());
    }

    #[test]
    fn a_layer_fitting_no_block_stays_f32_and_nothing_fitting_is_not_applicable() {
        let mlp = mlp_with_widths(&[64, 20, 10]);
        let q = quantize(&mlp, BlockFormat::Q8_0).unwrap();
        assert_eq!(q.layers[0].format, "q8_0");
        assert_eq!(q.layers[1].format, "f32");
        assert!(q.layers[1].note.as_deref().unwrap().contains("kept f32"));
        let none_fit = mlp_with_widths(&[20, 10]);
        let err = quantize(&none_fit, BlockFormat::Q8_0).unwrap_err();
        assert!(matches!(err, ModelError::NotApplicable(_)), "{err}");
    }

    #[test]
    fn quantized_size_is_the_real_block_storage() {
        let mlp = mlp_with_widths(&[64, 32]);
        let q = quantize(&mlp, BlockFormat::Q8_0).unwrap();
        // q8_0: 34 bytes per 32 weights; plus the f32 bias.
        assert_eq!(q.model.size_bytes(), 64 * 32 / 32 * 34 + 32 * 4);
        let q4 = quantize(&mlp, BlockFormat::Q4_0).unwrap();
        assert_eq!(q4.model.size_bytes(), 64 * 32 / 32 * 18 + 32 * 4);
    }

    #[test]
    fn every_post_step_maps_every_linear_and_embeddings_need_a_table() {
        let mlp = mlp_with_widths(&[64, 32]);
        for (name, format) in [("int8", "int8"), ("bf16", "bf16"), ("q4_0", "q4_0")] {
            let t: Technique = name.parse().unwrap();
            let m = apply_post_step(&mlp, t.post().unwrap(), name).unwrap();
            assert_eq!(m.layers[0].format, format, "{name}");
        }
        let cast = PostStep::Cast {
            dtype: HalfType::F16,
        };
        assert_eq!(
            apply_post_step(&mlp, &cast, "f16").unwrap().layers[0].format,
            "f16"
        );
        let all: Technique = "q8_0-all".parse().unwrap();
        let e = apply_post_step(&mlp, all.post().unwrap(), "q8_0-all: digits-mlp").unwrap_err();
        assert_eq!(
            e.to_string(),
            ModelError::NotApplicable(
                "q8_0-all: digits-mlp has no token embeddings; use the plain format".into()
            )
            .to_string()
        );
    }
}
