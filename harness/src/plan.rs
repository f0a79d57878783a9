//! The plan of a run: the matrix of cells (model x technique x device x batch size, and sequence
//! length for the families whose inputs have one), validated against the catalogue so that a
//! misspelt name is a usage error listing the valid ones. Each model's family says what it times
//! when the plan names no batch size or sequence length.

use serde::{Deserialize, Serialize};
use slimbench_models::catalog;
use slimbench_models::device::{cuda_ordinal, CUDA_BUILT};
use slimbench_models::technique::{technique_names, Technique};
use slimbench_models::workload::Cell;

use crate::error::UsageError;

/// The cells of a run, in the order they run (baseline first within each model and device).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Every cell.
    pub cells: Vec<Cell>,
}

fn check(kind: &str, given: &[String], known: &[String]) -> Result<(), UsageError> {
    for name in given {
        if !known.contains(name) {
            return Err(UsageError(format!(
                "unknown {kind} {name:?}; valid {kind}s: {}",
                known.join(", ")
            )));
        }
    }
    if given.is_empty() {
        return Err(UsageError(format!(
            "no {kind} given; valid {kind}s: {}",
            known.join(", ")
        )));
    }
    Ok(())
}

/// Names of known models.
pub fn known_models() -> Vec<String> {
    catalog::models()
        .iter()
        .map(|(n, _)| n.to_string())
        .collect()
}

/// The shapes a plan names; what it leaves out, each model's family fills in.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Shapes {
    /// Batch sizes for every model; `None`: each family's defaults.
    pub batch_sizes: Option<Vec<usize>>,
    /// Tokens per input for the models whose inputs have a length; `None`: each family's default.
    pub seq_lens: Option<Vec<usize>>,
    /// Tokens generated after the prompt for language models; `None`: each family's default.
    pub gen_tokens: Option<Vec<usize>>,
}

/// Devices when the plan names none.
pub const DEFAULT_DEVICES: &[&str] = &["cpu"];

impl Shapes {
    /// The same batch sizes for every model, and each family's sequence length.
    pub fn batches(batch_sizes: &[usize]) -> Self {
        Self {
            batch_sizes: Some(batch_sizes.to_vec()),
            seq_lens: None,
            gen_tokens: None,
        }
    }
}

/// The values of one optional plan dimension for a model: those the plan names, else the
/// family's default; `[None]` for a family without the dimension.
fn dimension(default: Option<usize>, given: &Option<Vec<usize>>) -> Vec<Option<usize>> {
    match default {
        Some(default) => given
            .clone()
            .unwrap_or_else(|| vec![default])
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None],
    }
}

/// Names of known devices.
pub fn known_devices() -> Vec<String> {
    catalog::DEVICES
        .iter()
        .map(|(n, _)| n.to_string())
        .collect()
}

/// Checks that every `cuda:N` of `devices` exists: `gpu_count` asks the driver (NVML) how many
/// NVIDIA GPUs there are, or says why it cannot. Errors say which: no driver, or no device N.
pub fn check_cuda_devices(
    devices: &[String],
    gpu_count: impl FnOnce() -> Result<u32, String>,
) -> Result<(), UsageError> {
    let ordinals: Vec<(&String, usize)> = devices
        .iter()
        .filter_map(|d| cuda_ordinal(d).map(|n| (d, n)))
        .collect();
    if ordinals.is_empty() {
        return Ok(());
    }
    let count = gpu_count()
        .map_err(|why| UsageError(format!("device {}: no NVIDIA driver: {why}", ordinals[0].0)))?
        as usize;
    for (name, n) in ordinals {
        if n >= count {
            let found = match count {
                0 => "no NVIDIA GPU found".to_string(),
                c => format!("{c} NVIDIA GPU(s) found: cuda:0..cuda:{}", c - 1),
            };
            return Err(UsageError(format!("device {name}: no device {n}; {found}")));
        }
    }
    Ok(())
}

impl Plan {
    /// Builds the matrix, validating every name. The baseline technique, when asked for, runs
    /// first so that a partial run still has it.
    pub fn new(
        models: &[String],
        techniques: &[String],
        devices: &[String],
        shapes: &Shapes,
    ) -> Result<Self, UsageError> {
        // Known names, and `bert@DIR` folders from --model-dir.
        let unknown: Vec<String> = models
            .iter()
            .filter(|m| !catalog::is_model(m))
            .cloned()
            .collect();
        if models.is_empty() || !unknown.is_empty() {
            check("model", &unknown, &known_models())?;
        }
        if techniques.is_empty() {
            return Err(UsageError(format!(
                "no technique given; valid techniques: {}",
                technique_names().join(", ")
            )));
        }
        let techniques = techniques
            .iter()
            .map(|t| t.parse::<Technique>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| UsageError(e.to_string()))?;
        if devices.is_empty() {
            return Err(UsageError(format!(
                "no device given; valid devices: {}",
                known_devices().join(", ")
            )));
        }
        for d in devices {
            if !catalog::is_device(d) {
                return Err(UsageError(format!(
                    "unknown device {d:?}; valid devices: {}",
                    known_devices().join(", ")
                )));
            }
            if cuda_ordinal(d).is_some() && !CUDA_BUILT {
                return Err(UsageError(format!(
                    "device {d:?}: this slimbench was built without the cuda feature \
                     (rebuild with `--features cuda`; see scripts/gpu-check.sh); valid devices here: cpu"
                )));
            }
        }
        if let Some(sizes) = &shapes.batch_sizes {
            if sizes.is_empty() || sizes.contains(&0) {
                return Err(UsageError(
                    "--batch-sizes needs one or more sizes of at least 1, e.g. 1,32".into(),
                ));
            }
        }
        if let Some(lens) = &shapes.seq_lens {
            if lens.is_empty() || lens.iter().any(|&s| s < 2) {
                return Err(UsageError(
                    "--seq-lens needs one or more lengths of at least 2 tokens, e.g. 32,128,256"
                        .into(),
                ));
            }
        }
        if let Some(gens) = &shapes.gen_tokens {
            if gens.is_empty() || gens.contains(&0) {
                return Err(UsageError(
                    "--gen-tokens needs one or more counts of at least 1, e.g. 16,64".into(),
                ));
            }
        }
        let mut ordered: Vec<&Technique> = techniques.iter().filter(|t| t.is_baseline()).collect();
        ordered.extend(techniques.iter().filter(|t| !t.is_baseline()));
        let mut cells = Vec::new();
        for model in models {
            let dims = catalog::plan_dims(model).map_err(|e| UsageError(e.to_string()))?;
            let batches = shapes
                .batch_sizes
                .clone()
                .unwrap_or_else(|| dims.default_batch_sizes.to_vec());
            let seqs = dimension(dims.default_seq_len, &shapes.seq_lens);
            let gens = dimension(dims.default_gen_tokens, &shapes.gen_tokens);
            for device in devices {
                for technique in &ordered {
                    for &seq_len in &seqs {
                        for &gen_tokens in &gens {
                            for &batch_size in &batches {
                                cells.push(Cell {
                                    model: model.clone(),
                                    technique: (*technique).clone(),
                                    device: device.clone(),
                                    batch_size,
                                    seq_len,
                                    gen_tokens,
                                });
                            }
                        }
                    }
                }
            }
        }
        cells.dedup();
        Ok(Self { cells })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn language_models_get_a_cell_per_prompt_length_and_generated_tokens() {
        let shapes = Shapes {
            batch_sizes: None,
            seq_lens: Some(vec![32, 128]),
            gen_tokens: Some(vec![8, 64]),
        };
        let p = Plan::new(
            &s(&["smollm2", "digits-mlp"]),
            &s(&["q8_0"]),
            &s(&["cpu"]),
            &shapes,
        )
        .unwrap();
        let lm: Vec<_> = p.cells.iter().filter(|c| c.model == "smollm2").collect();
        assert_eq!(
            lm.len(),
            4,
            "2 prompt lengths x 2 generated-token counts, batch 1"
        );
        assert!(lm
            .iter()
            .all(|c| c.batch_size == 1 && c.gen_tokens.is_some()));
        assert_eq!(lm[1].batch_label(), "1x32+64");
        let digits: Vec<_> = p.cells.iter().filter(|c| c.model == "digits-mlp").collect();
        assert!(digits
            .iter()
            .all(|c| c.gen_tokens.is_none() && c.seq_len.is_none()));
        let zero = Shapes {
            gen_tokens: Some(vec![0]),
            ..shapes
        };
        let e = Plan::new(&s(&["smollm2"]), &s(&["q8_0"]), &s(&["cpu"]), &zero).unwrap_err();
        assert!(e.to_string().contains("--gen-tokens"), "{e}");
    }

    #[test]
    fn matrix_has_every_cell_with_baseline_first() {
        let p = Plan::new(
            &s(&["digits-mlp"]),
            &s(&["q8_0", "fp32"]),
            &s(&["cpu"]),
            &Shapes::batches(&[1, 32]),
        )
        .unwrap();
        assert_eq!(p.cells.len(), 4);
        assert_eq!(p.cells[0].technique.to_string(), "fp32");
        assert_eq!(p.cells[3].technique.to_string(), "q8_0");
        assert_eq!(p.cells[3].batch_size, 32);
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let one = Shapes::batches(&[1]);
        let e = Plan::new(&s(&["digits-mlp"]), &s(&["q3"]), &s(&["cpu"]), &one).unwrap_err();
        assert!(
            e.0.contains("unknown technique \"q3\"") && e.0.contains("q8_0"),
            "{e}"
        );
        let e = Plan::new(&s(&["nope"]), &s(&["fp32"]), &s(&["cpu"]), &one).unwrap_err();
        assert!(e.0.contains("digits-mlp"), "{e}");
        let e = Plan::new(&s(&["digits-mlp"]), &s(&["fp32"]), &s(&["cuda:0"]), &one).unwrap_err();
        if !CUDA_BUILT {
            assert!(e.0.contains("built without the cuda feature"), "{e}");
        }
        let e = Plan::new(&s(&["digits-mlp"]), &s(&["fp32"]), &s(&["tpu:0"]), &one).unwrap_err();
        assert!(
            e.0.contains("unknown device") && e.0.contains("cuda:N"),
            "{e}"
        );
    }

    #[test]
    fn cuda_devices_are_checked_against_the_driver() {
        let devs = s(&["cpu", "cuda:1"]);
        let e =
            check_cuda_devices(&devs, || Err("libnvidia-ml.so.1 not found".into())).unwrap_err();
        assert_eq!(
            e.0,
            "device cuda:1: no NVIDIA driver: libnvidia-ml.so.1 not found"
        );
        let e = check_cuda_devices(&devs, || Ok(1)).unwrap_err();
        assert_eq!(
            e.0,
            "device cuda:1: no device 1; 1 NVIDIA GPU(s) found: cuda:0..cuda:0"
        );
        let e = check_cuda_devices(&s(&["cuda:0"]), || Ok(0)).unwrap_err();
        assert!(e.0.contains("no device 0; no NVIDIA GPU found"), "{e}");
        check_cuda_devices(&devs, || Ok(2)).unwrap();
        check_cuda_devices(&s(&["cpu"]), || panic!("not asked without a cuda device")).unwrap();
    }

    #[test]
    fn each_family_gets_its_batches_and_sequence_lengths() {
        let shapes = Shapes {
            batch_sizes: None,
            seq_lens: Some(vec![32, 128]),
            gen_tokens: None,
        };
        let p = Plan::new(
            &s(&["digits-mlp", "minilm"]),
            &s(&["fp32"]),
            &s(&["cpu"]),
            &shapes,
        )
        .unwrap();
        let text: Vec<_> = p.cells.iter().filter(|c| c.model == "minilm").collect();
        assert_eq!(text.len(), 4);
        assert!(text
            .iter()
            .all(|c| c.seq_len.is_some() && c.batch_size <= 8));
        assert!(p
            .cells
            .iter()
            .filter(|c| c.model == "digits-mlp")
            .all(|c| c.seq_len.is_none()));
        let given = Shapes::batches(&[4]);
        let p = Plan::new(
            &s(&["digits-mlp", "minilm"]),
            &s(&["fp32"]),
            &s(&["cpu"]),
            &given,
        )
        .unwrap();
        assert!(p.cells.iter().all(|c| c.batch_size == 4));
        assert_eq!(p.cells.len(), 2);
        let bad = Shapes {
            seq_lens: Some(vec![]),
            ..shapes
        };
        assert!(Plan::new(&s(&["minilm"]), &s(&["fp32"]), &s(&["cpu"]), &bad).is_err());
    }
}
