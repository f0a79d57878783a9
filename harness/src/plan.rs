//! The plan of a run: the matrix of cells (model x technique x device x batch size, and sequence
//! length for text models), validated
//! against the catalogue so that a misspelt name is a usage error listing the valid ones.

use serde::{Deserialize, Serialize};
use slimbench_models::catalog;

use slimbench_models::device::{cuda_ordinal, CUDA_BUILT};
use slimbench_models::text::workload::{is_text_model, DEFAULT_SEQ_LEN};

use crate::results::CellKey;

/// A usage error: bad flags or names. The CLI exits 2 on it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The cells of a run, in the order they run (baseline first within each model and device).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Every cell.
    pub cells: Vec<CellKey>,
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
    catalog::MODELS.iter().map(|(n, _)| n.to_string()).collect()
}

/// The shapes a plan times: batch sizes, and for text models their own batch sizes and sequence
/// lengths.
#[derive(Debug, Clone, PartialEq)]
pub struct Shapes {
    /// Batch sizes of the non-text models.
    pub batch_sizes: Vec<usize>,
    /// Batch sizes (texts) of the text models.
    pub text_batch_sizes: Vec<usize>,
    /// Tokens per text of the text models.
    pub seq_lens: Vec<usize>,
}

/// Batch sizes of the non-text models when the plan names none.
pub const DEFAULT_BATCH_SIZES: &[usize] = &[1, 32];

/// Batch sizes (texts) of the text models when the plan names none.
pub const DEFAULT_TEXT_BATCH_SIZES: &[usize] = &[1, 8];

/// Devices when the plan names none.
pub const DEFAULT_DEVICES: &[&str] = &["cpu"];

impl Shapes {
    /// The same batch sizes for every model, and the default sequence length.
    pub fn batches(batch_sizes: &[usize]) -> Self {
        Self {
            batch_sizes: batch_sizes.to_vec(),
            text_batch_sizes: batch_sizes.to_vec(),
            seq_lens: vec![DEFAULT_SEQ_LEN],
        }
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
                catalog::technique_names().join(", ")
            )));
        }
        for t in techniques {
            catalog::parse_technique(t).map_err(|e| UsageError(e.to_string()))?;
        }
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
        for sizes in [&shapes.batch_sizes, &shapes.text_batch_sizes] {
            if sizes.is_empty() || sizes.contains(&0) {
                return Err(UsageError(
                    "--batch-sizes needs one or more sizes of at least 1, e.g. 1,32".into(),
                ));
            }
        }
        if shapes.seq_lens.is_empty() || shapes.seq_lens.iter().any(|&s| s < 2) {
            return Err(UsageError(
                "--seq-lens needs one or more lengths of at least 2 tokens, e.g. 32,128,256".into(),
            ));
        }
        let mut ordered: Vec<&String> = techniques
            .iter()
            .filter(|t| *t == catalog::BASELINE)
            .collect();
        ordered.extend(techniques.iter().filter(|t| *t != catalog::BASELINE));
        let mut cells = Vec::new();
        for model in models {
            for device in devices {
                let text = is_text_model(model);
                let (batches, seqs): (&[usize], Vec<Option<usize>>) = if text {
                    (
                        &shapes.text_batch_sizes,
                        shapes.seq_lens.iter().map(|&s| Some(s)).collect(),
                    )
                } else {
                    (&shapes.batch_sizes, vec![None])
                };
                for technique in &ordered {
                    for &seq_len in &seqs {
                        for &batch_size in batches {
                            cells.push(CellKey {
                                model: model.clone(),
                                technique: (*technique).clone(),
                                device: device.clone(),
                                batch_size,
                                seq_len,
                            });
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
    fn matrix_has_every_cell_with_baseline_first() {
        let p = Plan::new(
            &s(&["digits-mlp"]),
            &s(&["q8_0", "fp32"]),
            &s(&["cpu"]),
            &Shapes::batches(&[1, 32]),
        )
        .unwrap();
        assert_eq!(p.cells.len(), 4);
        assert_eq!(p.cells[0].technique, "fp32");
        assert_eq!(p.cells[3].technique, "q8_0");
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
    fn text_models_get_their_batches_and_sequence_lengths() {
        let shapes = Shapes {
            batch_sizes: vec![1, 32],
            text_batch_sizes: vec![1, 8],
            seq_lens: vec![32, 128],
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
        let bad = Shapes {
            seq_lens: vec![],
            ..shapes
        };
        assert!(Plan::new(&s(&["minilm"]), &s(&["fp32"]), &s(&["cpu"]), &bad).is_err());
    }
}
