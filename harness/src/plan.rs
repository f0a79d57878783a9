//! The plan of a run: the matrix of cells (model x technique x device x batch size), validated
//! against the catalogue so that a misspelt name is a usage error listing the valid ones.

use serde::{Deserialize, Serialize};
use slimbench_models::catalog;

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

/// Names of known devices.
pub fn known_devices() -> Vec<String> {
    catalog::DEVICES
        .iter()
        .map(|(n, _)| n.to_string())
        .collect()
}

impl Plan {
    /// Builds the matrix, validating every name. The baseline technique, when asked for, runs
    /// first so that a partial run still has it.
    pub fn new(
        models: &[String],
        techniques: &[String],
        devices: &[String],
        batch_sizes: &[usize],
    ) -> Result<Self, UsageError> {
        check("model", models, &known_models())?;
        if techniques.is_empty() {
            return Err(UsageError(format!(
                "no technique given; valid techniques: {}",
                catalog::technique_names().join(", ")
            )));
        }
        for t in techniques {
            catalog::parse_technique(t).map_err(|e| UsageError(e.to_string()))?;
        }
        for d in devices {
            if d.starts_with("cuda") {
                return Err(UsageError(format!(
                    "device {d:?}: this slimbench was built without the cuda feature; valid devices: {}",
                    known_devices().join(", ")
                )));
            }
        }
        check("device", devices, &known_devices())?;
        if batch_sizes.is_empty() || batch_sizes.contains(&0) {
            return Err(UsageError(
                "--batch-sizes needs one or more sizes of at least 1, e.g. 1,32".into(),
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
                for technique in &ordered {
                    for &batch_size in batch_sizes {
                        cells.push(CellKey {
                            model: model.clone(),
                            technique: (*technique).clone(),
                            device: device.clone(),
                            batch_size,
                        });
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
            &[1, 32],
        )
        .unwrap();
        assert_eq!(p.cells.len(), 4);
        assert_eq!(p.cells[0].technique, "fp32");
        assert_eq!(p.cells[3].technique, "q8_0");
        assert_eq!(p.cells[3].batch_size, 32);
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let e = Plan::new(&s(&["digits-mlp"]), &s(&["q3"]), &s(&["cpu"]), &[1]).unwrap_err();
        assert!(
            e.0.contains("unknown technique \"q3\"") && e.0.contains("q8_0"),
            "{e}"
        );
        let e = Plan::new(&s(&["nope"]), &s(&["fp32"]), &s(&["cpu"]), &[1]).unwrap_err();
        assert!(e.0.contains("digits-mlp"), "{e}");
        let e = Plan::new(&s(&["digits-mlp"]), &s(&["fp32"]), &s(&["cuda:0"]), &[1]).unwrap_err();
        assert!(e.0.contains("built without the cuda feature"), "{e}");
    }
}
