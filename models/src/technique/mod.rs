//! The technique grammar, typed: a [`Technique`] is a chain of training steps (pruning,
//! distillation) and at most one post-training step (a block format, `int8`, a half-precision
//! cast), parsed once from its name and written back to the same name, so records and plans keep
//! the string they always had.
//!
//! Each kind of step is defined once, in the catalogue ([`catalogue()`]: name pattern, family of
//! techniques, description, control or not, parser and namer); `slimbench list` prints it. A chain
//! `A+B+...` applies its steps left to right; a quantization or cast may only come last, or just
//! before `kv-q8_0` (for example `prune-structured-50+q8_0`, `distill+q8_0+kv-q8_0`).

mod catalogue;
mod steps;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

use crate::error::{ModelError, Result};

pub use catalogue::{
    catalogue, technique_names, techniques, StepDef, StepFamily, BASELINE, CHAIN_SYNTAX, INT8,
    KV_Q8_0,
};
pub use steps::{HalfType, PostStep, Step, TrainingStep};

/// One step of a technique as the report and glossary read it: its name, its definition and
/// what it does with its own values.
#[derive(Debug, Clone)]
pub struct NamedStep {
    /// The step's canonical name (`prune-structured-50-l1`).
    pub name: String,
    /// The step's definition in the catalogue.
    pub def: &'static StepDef,
    values: catalogue::Values,
}

impl NamedStep {
    /// What this step does, with its own numbers (`50% of hidden neurons ... by L1 norm`).
    pub fn about(&self) -> String {
        self.def.describe(&self.values)
    }

    /// True for a control arm (see [`StepDef::controls`]).
    pub fn is_control(&self) -> bool {
        self.def.controls.is_some()
    }
}

/// A technique: training steps left to right, then at most one post-training step, then perhaps
/// the cache step. Named once when made (each step by its catalogue entry); two techniques are
/// equal, hash and order as those names do.
#[derive(Debug, Clone)]
pub struct Technique {
    training: Vec<TrainingStep>,
    post: Option<PostStep>,
    kv_q8_0: bool,
    /// Each step named by its definition, in chain order (the baseline's own entry for `fp32`).
    named: Vec<NamedStep>,
    /// The steps' names joined by `+`.
    name: String,
}

impl Default for Technique {
    fn default() -> Self {
        Self::baseline()
    }
}

impl Technique {
    /// The uncompressed baseline (`fp32`).
    pub fn baseline() -> Self {
        let def = &catalogue()[0];
        Self {
            training: Vec::new(),
            post: None,
            kv_q8_0: false,
            named: vec![NamedStep {
                name: BASELINE.to_string(),
                def,
                values: Vec::new(),
            }],
            name: BASELINE.to_string(),
        }
    }

    /// The technique of a chain of parsed steps, each named by its catalogue entry; an error
    /// when a step is out of place (a post-training step not last, the cache step not at the
    /// very end) or, a bug, has no definition.
    fn from_steps(chain: &str, steps: Vec<Step>) -> Result<Self> {
        if steps.is_empty() {
            return Ok(Self::baseline());
        }
        let mut t = Self {
            training: Vec::new(),
            post: None,
            kv_q8_0: false,
            named: Vec::new(),
            name: String::new(),
        };
        for step in steps {
            let (def, name, values) = catalogue::name_step(&step).ok_or_else(|| {
                ModelError::Invalid(format!(
                    "technique {chain:?}: the step {step:?} has no entry in the catalogue"
                ))
            })?;
            if t.kv_q8_0 {
                return Err(ModelError::Invalid(format!(
                    "technique {chain:?}: {KV_Q8_0} must be the last step of a chain"
                )));
            }
            match step {
                Step::KvCacheQ8_0 => t.kv_q8_0 = true,
                _ if t.post.is_some() => {
                    return Err(ModelError::Invalid(format!(
                        "technique {chain:?}: a quantization or cast must be the last step of a chain (only {KV_Q8_0} may follow it)"
                    )))
                }
                Step::Training(s) => t.training.push(s),
                Step::Post(s) => t.post = Some(s),
            }
            t.named.push(NamedStep { name, def, values });
        }
        t.name = t
            .named
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join("+");
        Ok(t)
    }

    /// True for `fp32`.
    pub fn is_baseline(&self) -> bool {
        self.training.is_empty() && self.post.is_none() && !self.kv_q8_0
    }

    /// True when the chain ends in `kv-q8_0`: a language model keeps its key/value cache in
    /// GGML's `q8_0` blocks (32 values, one f16 scale) instead of f32.
    pub fn kv_cache_q8_0(&self) -> bool {
        self.kv_q8_0
    }

    /// The training steps, in order.
    pub fn training_steps(&self) -> &[TrainingStep] {
        &self.training
    }

    /// The post-training step, if the chain ends in one.
    pub fn post(&self) -> Option<&PostStep> {
        self.post.as_ref()
    }

    /// True when a step prunes weights to zero without removing them (the sparse kernel is then
    /// worth considering).
    pub fn prunes_unstructured(&self) -> bool {
        self.training
            .iter()
            .any(|s| matches!(s, TrainingStep::PruneUnstructured { .. }))
    }

    /// The control arm of an experiment (`distill-control`: the student trained on labels
    /// alone), which exists to measure what another technique adds, never a variant to ship: a
    /// step whose catalogue entry names the step it controls.
    pub fn is_control(&self) -> bool {
        self.named.iter().any(NamedStep::is_control)
    }

    /// For a control arm, the technique it controls: the same chain with each control step
    /// replaced by the step it controls (the same architecture and shapes, so the two time
    /// alike on a stable machine: the report's A/A check); `None` for any other technique.
    pub fn treated_twin(&self) -> Option<Technique> {
        if !self.is_control() {
            return None;
        }
        let names: Vec<&str> = self
            .named
            .iter()
            .map(|s| s.def.controls.unwrap_or(&s.name))
            .collect();
        names.join("+").parse().ok()
    }

    /// The steps, named and described by their catalogue entries, in order (the baseline's own
    /// entry for `fp32`).
    pub fn steps(&self) -> &[NamedStep] {
        &self.named
    }

    /// The names of the steps, in order (`["prune-structured-50", "q8_0"]`); `["fp32"]` for the
    /// baseline.
    pub fn step_names(&self) -> Vec<String> {
        self.named.iter().map(|s| s.name.clone()).collect()
    }

    /// The technique's name (`prune-structured-50+q8_0`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl PartialEq for Technique {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Technique {}

impl std::hash::Hash for Technique {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl PartialOrd for Technique {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Technique {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(&other.name)
    }
}

impl fmt::Display for Technique {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl FromStr for Technique {
    type Err = ModelError;

    /// Parses a technique (a chain of steps joined by `+`, each read by its catalogue entry);
    /// `fp32` is the empty chain.
    fn from_str(name: &str) -> Result<Self> {
        let name = name.trim();
        if name == BASELINE {
            return Ok(Self::baseline());
        }
        let steps = name
            .split('+')
            .map(|part| catalogue::parse_step(part.trim()).map(|(_, step)| step))
            .collect::<Result<Vec<_>>>()?;
        Self::from_steps(name, steps)
    }
}

impl Serialize for Technique {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for Technique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::blocks::BlockFormat;
    use crate::pruning::Norm;

    #[test]
    fn controls_are_known_and_every_step_is_described_with_its_own_values() {
        let control = |n: &str| n.parse::<Technique>().unwrap().is_control();
        assert!(control("distill-control"));
        assert!(control("distill-control+q8_0"));
        assert!(!control("distill"));
        let twin = "distill-control+q8_0".parse::<Technique>().unwrap();
        assert_eq!(twin.treated_twin().unwrap().to_string(), "distill+q8_0");
        let t: Technique = "prune-structured-50-l1+q8_0-all".parse().unwrap();
        let about: Vec<String> = t.steps().iter().map(NamedStep::about).collect();
        assert!(
            about[0].starts_with("50% of hidden neurons") && about[0].contains("by L1 norm"),
            "{}",
            about[0]
        );
        assert!(
            about[1].contains("q8_0 (GGML block of 32)") && about[1].contains("token embeddings"),
            "{}",
            about[1]
        );
        assert_eq!(t.steps()[0].def.family, StepFamily::Pruning);
        assert_eq!(t.steps()[1].def.family, StepFamily::Quantization);
        assert!(about.iter().all(|a| !a.contains('{')), "{about:?}");
    }

    #[test]
    fn every_catalogue_entry_parses_and_names_its_own_steps() {
        // One example name per entry: each parses through that entry and names back to itself.
        let examples = [
            "q8_0",
            "q6k",
            "q5k",
            "q5_1",
            "q5_0",
            "q4k",
            "q4_1",
            "q4_0",
            "q4k-all",
            "int8",
            "bf16",
            "prune-unstructured-30",
            "prune-unstructured-global-75",
            "prune-oneshot-40",
            "prune-structured-20-l1",
            "prune-layers-3",
            "distill",
            "distill-control",
            "kv-q8_0",
        ];
        let mut seen = std::collections::HashSet::new();
        for name in examples {
            let t: Technique = name.parse().unwrap();
            assert_eq!(t.to_string(), name);
            let step = &t.steps()[0];
            assert!(!step.about().contains('{'), "{name}: {}", step.about());
            seen.insert(step.def.syntax.clone());
        }
        for def in catalogue().iter().skip(1) {
            assert!(seen.contains(&def.syntax), "no example for {}", def.syntax);
            assert!(!def.about().contains('{'), "{}", def.about());
        }
        assert_eq!(
            Technique::baseline().steps()[0].def.family,
            StepFamily::Baseline
        );
    }

    #[test]
    fn chains_parse_and_post_training_steps_must_be_last() {
        assert!("fp32".parse::<Technique>().unwrap().is_baseline());
        let t: Technique = "prune-structured-50+q8_0".parse().unwrap();
        assert_eq!(
            t.training_steps(),
            &[TrainingStep::PruneStructured {
                ratio: 0.5,
                norm: Norm::L2
            }]
        );
        assert_eq!(
            t.post(),
            Some(&PostStep::Quantize {
                format: BlockFormat::Q8_0,
                embeddings: false
            })
        );
        let kv: Technique = "prune-layers-2+q4_1-all+kv-q8_0".parse().unwrap();
        assert!(kv.kv_cache_q8_0() && kv.post().is_some() && !kv.is_baseline());
        let alone: Technique = "kv-q8_0".parse().unwrap();
        assert!(alone.kv_cache_q8_0() && alone.post().is_none() && !alone.is_baseline());
        let e = "kv-q8_0+q8_0".parse::<Technique>().unwrap_err().to_string();
        assert!(e.contains("kv-q8_0 must be the last step"), "{e}");
        assert!("q8_0+distill".parse::<Technique>().is_err());
        assert!("q8_0+int8".parse::<Technique>().is_err());
        assert!("prune-unstructured-100".parse::<Technique>().is_err());
        let e = "q3".parse::<Technique>().unwrap_err().to_string();
        assert!(e.contains("valid techniques") && e.contains("q8_0"), "{e}");
    }

    #[test]
    fn names_round_trip_and_serialise_as_the_string() {
        let names = [
            "fp32",
            "prune-structured-50+int8",
            "distill+q8_0",
            "q4k-all",
            "bf16",
            "prune-unstructured-global-75",
            "prune-structured-30-l1",
            "distill-control+q5_1",
            "kv-q8_0",
            "prune-layers-2+q4_1-all+kv-q8_0",
        ];
        for name in names {
            let t: Technique = name.parse().unwrap();
            assert_eq!(t.to_string(), name);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Technique>(&json).unwrap(), t);
        }
        // The one alias: `-l2` is the default norm's spelling.
        let t: Technique = "prune-structured-50-l2".parse().unwrap();
        assert_eq!(t.to_string(), "prune-structured-50");
        assert!(serde_json::from_str::<Technique>("\"q3\"").is_err());
    }

    #[test]
    fn steps_serialise_as_the_records_always_had_them() {
        let t: Technique = "prune-unstructured-90+q8_0-all".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&t.training_steps()[0]).unwrap(),
            r#"{"step":"prune-unstructured","sparsity":0.9,"scope":"per-layer"}"#
        );
        assert_eq!(
            serde_json::to_string(t.post().unwrap()).unwrap(),
            r#"{"step":"quantize","format":"q8_0","embeddings":true}"#
        );
        let cast: Technique = "bf16".parse().unwrap();
        assert_eq!(
            serde_json::to_string(cast.post().unwrap()).unwrap(),
            r#"{"step":"cast","dtype":"bf16"}"#
        );
        let int8: Technique = "int8".parse().unwrap();
        assert_eq!(
            serde_json::to_string(int8.post().unwrap()).unwrap(),
            r#"{"step":"int8"}"#
        );
    }
}
