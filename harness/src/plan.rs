//! The plan of a run: the matrix of cells (model x technique x device x batch size, and sequence
//! length for the families whose inputs have one), validated against the catalogue so that a
//! misspelt name is a usage error listing the valid ones. Each model's family says what it times
//! when the plan names no batch size or sequence length.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use slimbench_models::catalog;
use slimbench_models::device::{cuda_ordinal, CUDA_BUILT};
use slimbench_models::dimension::{self, Dimension};
use slimbench_models::engine::Engine;
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
    /// The values given of each dimension beyond the batch size, by its key (`seq_len`), for the
    /// models whose family has it; a dimension left out takes each family's defaults.
    pub dims: BTreeMap<&'static str, Vec<usize>>,
}

/// Devices when the plan names none.
pub const DEFAULT_DEVICES: &[&str] = &["cpu"];

impl Shapes {
    /// The same batch sizes for every model, and each family's other dimensions.
    pub fn batches(batch_sizes: &[usize]) -> Self {
        Self {
            batch_sizes: Some(batch_sizes.to_vec()),
            dims: BTreeMap::new(),
        }
    }
}

/// Checks the values given of `dimension`: one or more, each in its range.
fn check_dimension(dimension: &Dimension, values: &[usize]) -> Result<(), UsageError> {
    let limit = crate::limits::of_dimension(dimension);
    if values.is_empty() {
        return Err(UsageError(format!(
            "{} ({}) needs one or more values from {} to {} {}",
            limit.flag, dimension.config_key, dimension.min, dimension.max, dimension.label
        )));
    }
    for &v in values {
        limit.check_count(v)?;
    }
    Ok(())
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
        for (key, values) in &shapes.dims {
            let dimension = dimension::by_key(key)
                .ok_or_else(|| UsageError(format!("unknown plan dimension {key:?}")))?;
            check_dimension(dimension, values)?;
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
            let values: Vec<(&'static Dimension, Vec<usize>)> = dims
                .dimensions
                .iter()
                .map(|d| {
                    let given = shapes.dims.get(d.dimension.key);
                    let values = given.cloned().unwrap_or_else(|| d.defaults.to_vec());
                    (d.dimension, values)
                })
                .collect();
            let combinations = dimension::combinations(&values);
            for device in devices {
                for technique in &ordered {
                    for dims in &combinations {
                        for &batch_size in &batches {
                            cells.push(Cell {
                                model: model.clone(),
                                technique: (*technique).clone(),
                                device: device.clone(),
                                batch_size,
                                dims: dims.clone(),
                                engine: Engine::Slimbench,
                            });
                        }
                    }
                }
            }
        }
        cells.dedup();
        Ok(Self { cells })
    }

    /// The plan with each cell on each of `engines` (names; `slimbench` alone leaves it as it
    /// is), every engine's cells after the previous engine's, baselines first within each. The
    /// ort engine needs ONNX Runtime's library: without it this is a usage error that names the
    /// fetch.
    pub fn on_engines(self, engines: &[String]) -> Result<Self, UsageError> {
        if engines.is_empty() {
            return Err(UsageError(
                "--engines needs one or more engines: slimbench, ort".into(),
            ));
        }
        let mut parsed: Vec<Engine> = Vec::new();
        for name in engines {
            let engine = name
                .parse::<Engine>()
                .map_err(|e| UsageError(format!("--engines (config key engines): {e}")))?;
            if !parsed.contains(&engine) {
                parsed.push(engine);
            }
        }
        for engine in &parsed {
            catalog::check_engine(*engine)
                .map_err(|e| UsageError(format!("--engines {engine}: {e}")))?;
        }
        let mut models: Vec<&str> = self.cells.iter().map(|c| c.model.as_str()).collect();
        models.dedup();
        for model in models {
            catalog::check_model(model, &parsed).map_err(|e| UsageError(e.to_string()))?;
        }
        let cells = parsed
            .iter()
            .flat_map(|engine| self.cells.iter().map(move |c| c.clone().on_engine(*engine)))
            .collect();
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
    fn engines_repeat_the_plan_each_after_the_last_baseline_first_and_a_repeat_is_dropped() {
        let p = Plan::new(
            &s(&["digits-mlp"]),
            &s(&["q8_0", "fp32"]),
            &s(&["cpu"]),
            &Shapes::batches(&[1]),
        )
        .unwrap()
        .on_engines(&s(&["slimbench", "slimbench"]))
        .unwrap();
        let names: Vec<String> = p.cells.iter().map(|c| c.to_string()).collect();
        // The own engine alone keeps the cells' names as they were before engines.
        assert_eq!(names, ["digits-mlp/fp32/cpu/b1", "digits-mlp/q8_0/cpu/b1"]);
        let e = p.clone().on_engines(&s(&["slimbench", "trt"])).unwrap_err();
        assert!(e.0.contains("unknown engine \"trt\""), "{}", e.0);
        assert!(p.on_engines(&[]).is_err());
    }

    #[test]
    fn language_models_get_a_cell_per_prompt_length_and_generated_tokens() {
        let shapes = Shapes {
            batch_sizes: None,
            dims: BTreeMap::from([("seq_len", vec![32, 128]), ("gen_tokens", vec![8, 64])]),
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
            .all(|c| c.batch_size == 1 && c.dim(&dimension::GEN_TOKENS).is_some()));
        assert_eq!(lm[1].batch_label(), "1x32+64");
        let digits: Vec<_> = p.cells.iter().filter(|c| c.model == "digits-mlp").collect();
        assert!(digits.iter().all(|c| c.dims.is_empty()));
        let mut zero = shapes;
        zero.dims.insert("gen_tokens", vec![0]);
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
            dims: BTreeMap::from([("seq_len", vec![32, 128])]),
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
            .all(|c| c.dim(&dimension::SEQ_LEN).is_some() && c.batch_size <= 8));
        assert!(p
            .cells
            .iter()
            .filter(|c| c.model == "digits-mlp")
            .all(|c| c.dims.is_empty()));
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
        let mut bad = shapes;
        bad.dims.insert("seq_len", vec![]);
        assert!(Plan::new(&s(&["minilm"]), &s(&["fp32"]), &s(&["cpu"]), &bad).is_err());
    }
}
