//! The technique grammar, typed: a [`Technique`] is a chain of training steps (pruning,
//! distillation) and at most one post-training step (a block format, `int8`, a half-precision
//! cast), parsed once from its name and written back to the same name, so records and plans keep
//! the string they always had.
//!
//! Grammar (`slimbench list` prints it):
//! - `fp32`: the uncompressed baseline (the empty chain).
//! - `q8_0`, `q6k`, `q5k`, `q5_1`, `q5_0`, `q4k`, `q4_1`, `q4_0`: weight quantization of every
//!   fully connected layer (per-layer fallback where the block does not fit).
//! - `<format>-all` (models with token embeddings): the same, and the token embedding table too.
//! - `int8`: slimbench's own int8 weights times activations quantized at run time.
//! - `f16`, `bf16`: half-precision casts of the fully connected weights.
//! - `prune-unstructured-S`, `prune-unstructured-global-S`: magnitude pruning to S% zeros (1..99),
//!   per layer or global, with a fine-tune that keeps the mask; each layer runs dense or CSR.
//! - `prune-structured-R`, `prune-structured-R-l1`: removal of R% (1..99) of the hidden neurons,
//!   channels or heads by L2 (or L1) norm.
//! - `distill`: a smaller student trained on the model's outputs; `distill-control`: the same
//!   student on the labels alone.
//! - `kv-q8_0` (language models): the key/value cache in GGML's `q8_0` blocks instead of f32;
//!   alone or ending a chain (`q4_1-all+kv-q8_0`).
//! - chains `A+B+...`: applied left to right; a quantization or cast may only come last, or
//!   just before `kv-q8_0` (for example `prune-structured-50+q8_0`, `distill+q8_0+kv-q8_0`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

use crate::error::{ModelError, Result};
use crate::kernels::blocks::BlockFormat;
use crate::pruning::{Norm, Scope};

/// The uncompressed baseline technique.
pub const BASELINE: &str = "fp32";

/// The name of slimbench's own int8 technique (see [`PostStep::Int8`]).
pub const INT8: &str = "int8";

/// The step that keeps a language model's key/value cache in `q8_0` blocks (see
/// [`Technique::kv_cache_q8_0`]).
pub const KV_Q8_0: &str = "kv-q8_0";

/// A step that trains: its result is cached under a key of all its inputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum TrainingStep {
    /// Magnitude pruning to `sparsity` (0..1).
    PruneUnstructured {
        /// Fraction of weights set to zero.
        sparsity: f64,
        /// Per layer or global threshold.
        scope: Scope,
    },
    /// Removal of neurons, channels or heads.
    PruneStructured {
        /// Fraction removed.
        ratio: f64,
        /// Ranking norm.
        norm: Norm,
    },
    /// Removal of whole transformer blocks: the `count` whose removal changes the hidden state
    /// least on calibration text (`prune-layers-N`; language models).
    DropLayers {
        /// Blocks removed.
        count: usize,
    },
    /// Distillation into the model's default student (`control`: labels only).
    Distill {
        /// True for the labels-only control.
        control: bool,
    },
}

/// The half-precision type of a cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HalfType {
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl HalfType {
    /// The candle dtype.
    pub fn dtype(self) -> candle_core::DType {
        match self {
            HalfType::F16 => candle_core::DType::F16,
            HalfType::Bf16 => candle_core::DType::BF16,
        }
    }

    fn name(self) -> &'static str {
        match self {
            HalfType::F16 => "f16",
            HalfType::Bf16 => "bf16",
        }
    }
}

/// A step applied to the trained weights when the workload is built (milliseconds, never cached);
/// it can only end a chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum PostStep {
    /// Block quantization of the fully connected weights.
    Quantize {
        /// The block format.
        #[serde(serialize_with = "serialize_format")]
        format: BlockFormat,
        /// Also the token embeddings (`<format>-all`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        embeddings: bool,
    },
    /// int8 weights (one scale per output channel and group of inputs) times activations
    /// quantized per row at run time, through slimbench's own kernel.
    Int8,
    /// Half-precision cast of the fully connected weights.
    Cast {
        /// `f16` or `bf16`.
        dtype: HalfType,
    },
}

fn serialize_format<S: Serializer>(
    format: &BlockFormat,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(format.name())
}

/// A technique: training steps left to right, then at most one post-training step. Two
/// techniques are equal, hash and order as their names do.
#[derive(Debug, Clone, Default)]
pub struct Technique {
    training: Vec<TrainingStep>,
    post: Option<PostStep>,
    kv_q8_0: bool,
}

impl Technique {
    /// The uncompressed baseline (`fp32`).
    pub fn baseline() -> Self {
        Self::default()
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
    /// alone), which exists to measure what another technique adds, never a variant to ship.
    pub fn is_control(&self) -> bool {
        self.training
            .iter()
            .any(|s| matches!(s, TrainingStep::Distill { control: true }))
    }

    /// For a control arm, the technique it controls: the same chain with the real distillation
    /// in place of the labels-only one (the same architecture and shapes, so the two time alike
    /// on a stable machine: the report's A/A check); `None` for any other technique.
    pub fn treated_twin(&self) -> Option<Technique> {
        if !self.is_control() {
            return None;
        }
        let mut twin = self.clone();
        for step in &mut twin.training {
            if let TrainingStep::Distill { control } = step {
                *control = false;
            }
        }
        Some(twin)
    }

    /// The names of the steps, in order (`["prune-structured-50", "q8_0"]`); `["fp32"]` for the
    /// baseline.
    pub fn step_names(&self) -> Vec<String> {
        if self.is_baseline() {
            return vec![BASELINE.to_string()];
        }
        let mut names: Vec<String> = self.training.iter().map(training_step_name).collect();
        names.extend(self.post.iter().map(post_step_name));
        if self.kv_q8_0 {
            names.push(KV_Q8_0.to_string());
        }
        names
    }
}

fn percent_name(fraction: f64) -> u32 {
    (fraction * 100.0).round() as u32
}

fn training_step_name(step: &TrainingStep) -> String {
    match step {
        TrainingStep::PruneUnstructured { sparsity, scope } => match scope {
            Scope::PerLayer => format!("prune-unstructured-{}", percent_name(*sparsity)),
            Scope::Global => format!("prune-unstructured-global-{}", percent_name(*sparsity)),
        },
        TrainingStep::PruneStructured { ratio, norm } => match norm {
            Norm::L2 => format!("prune-structured-{}", percent_name(*ratio)),
            Norm::L1 => format!("prune-structured-{}-l1", percent_name(*ratio)),
        },
        TrainingStep::DropLayers { count } => format!("prune-layers-{count}"),
        TrainingStep::Distill { control: false } => "distill".into(),
        TrainingStep::Distill { control: true } => "distill-control".into(),
    }
}

fn post_step_name(step: &PostStep) -> String {
    match step {
        PostStep::Quantize {
            format,
            embeddings: false,
        } => format.name().into(),
        PostStep::Quantize {
            format,
            embeddings: true,
        } => format!("{}-all", format.name()),
        PostStep::Int8 => INT8.into(),
        PostStep::Cast { dtype } => dtype.name().into(),
    }
}

impl PartialEq for Technique {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Technique {}

impl std::hash::Hash for Technique {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.to_string().hash(state);
    }
}

impl PartialOrd for Technique {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Technique {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.to_string().cmp(&other.to_string())
    }
}

impl fmt::Display for Technique {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.step_names().join("+"))
    }
}

fn percent(text: &str, name: &str) -> Result<f64> {
    let v: u32 = text.parse().map_err(|_| {
        ModelError::Invalid(format!("{name}: {text:?} is not a whole percentage 1..99"))
    })?;
    if !(1..=99).contains(&v) {
        return Err(ModelError::Invalid(format!(
            "{name}: {v}% is outside 1..99"
        )));
    }
    Ok(f64::from(v) / 100.0)
}

/// One step of a chain, of either kind.
enum AnyStep {
    Training(TrainingStep),
    Post(PostStep),
}

fn parse_step(name: &str) -> Result<AnyStep> {
    if let Some(format) = BlockFormat::from_name(name) {
        return Ok(AnyStep::Post(PostStep::Quantize {
            format,
            embeddings: false,
        }));
    }
    if let Some(format) = name.strip_suffix("-all").and_then(BlockFormat::from_name) {
        return Ok(AnyStep::Post(PostStep::Quantize {
            format,
            embeddings: true,
        }));
    }
    let post = match name {
        INT8 => Some(PostStep::Int8),
        "f16" => Some(PostStep::Cast {
            dtype: HalfType::F16,
        }),
        "bf16" => Some(PostStep::Cast {
            dtype: HalfType::Bf16,
        }),
        _ => None,
    };
    if let Some(post) = post {
        return Ok(AnyStep::Post(post));
    }
    if name == "distill" || name == "distill-control" {
        return Ok(AnyStep::Training(TrainingStep::Distill {
            control: name == "distill-control",
        }));
    }
    if let Some(rest) = name.strip_prefix("prune-unstructured-global-") {
        return Ok(AnyStep::Training(TrainingStep::PruneUnstructured {
            sparsity: percent(rest, name)?,
            scope: Scope::Global,
        }));
    }
    if let Some(rest) = name.strip_prefix("prune-unstructured-") {
        return Ok(AnyStep::Training(TrainingStep::PruneUnstructured {
            sparsity: percent(rest, name)?,
            scope: Scope::PerLayer,
        }));
    }
    if let Some(rest) = name.strip_prefix("prune-layers-") {
        let count: usize = rest.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
            ModelError::Invalid(format!(
                "{name}: {rest:?} is not a count of blocks of at least 1"
            ))
        })?;
        return Ok(AnyStep::Training(TrainingStep::DropLayers { count }));
    }
    if let Some(rest) = name.strip_prefix("prune-structured-") {
        let (num, norm) = match rest.strip_suffix("-l1") {
            Some(n) => (n, Norm::L1),
            None => (rest.strip_suffix("-l2").unwrap_or(rest), Norm::L2),
        };
        return Ok(AnyStep::Training(TrainingStep::PruneStructured {
            ratio: percent(num, name)?,
            norm,
        }));
    }
    Err(ModelError::Invalid(format!(
        "unknown technique {name:?}; valid techniques: {}",
        technique_names().join(", ")
    )))
}

impl FromStr for Technique {
    type Err = ModelError;

    /// Parses a technique (a chain of steps joined by `+`); `fp32` is the empty chain.
    fn from_str(name: &str) -> Result<Self> {
        let name = name.trim();
        if name == BASELINE {
            return Ok(Self::baseline());
        }
        let mut technique = Self::default();
        for part in name.split('+') {
            let part = part.trim();
            if technique.kv_q8_0 {
                return Err(ModelError::Invalid(format!(
                    "technique {name:?}: {KV_Q8_0} must be the last step of a chain"
                )));
            }
            if part == KV_Q8_0 {
                technique.kv_q8_0 = true;
                continue;
            }
            if technique.post.is_some() {
                return Err(ModelError::Invalid(format!(
                    "technique {name:?}: a quantization or cast must be the last step of a chain (only {KV_Q8_0} may follow it)"
                )));
            }
            match parse_step(part)? {
                AnyStep::Training(step) => technique.training.push(step),
                AnyStep::Post(step) => technique.post = Some(step),
            }
        }
        Ok(technique)
    }
}

impl Serialize for Technique {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Technique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The technique names and patterns, for help and error messages.
pub fn technique_names() -> Vec<String> {
    let mut list = vec![BASELINE.to_string()];
    list.extend(BlockFormat::ALL.iter().map(|f| f.name().to_string()));
    list.push("<format>-all (text and language models: the token embeddings too)".to_string());
    list.extend(
        [
            INT8,
            "f16",
            "bf16",
            "prune-unstructured-<1..99>",
            "prune-unstructured-global-<1..99>",
            "prune-structured-<1..99>[-l1]",
            "prune-layers-<N>",
            "distill",
            "distill-control",
            KV_Q8_0,
            "<technique>+<technique> (a quantization or cast last, then kv-q8_0)",
        ]
        .map(String::from),
    );
    list
}

/// Techniques with a one-line description, for `slimbench list`.
pub fn techniques() -> Vec<(String, String)> {
    let mut list = vec![(
        BASELINE.to_string(),
        "the uncompressed model, f32 weights".to_string(),
    )];
    for format in BlockFormat::ALL {
        list.push((
            format.name().to_string(),
            format!(
                "every Linear's weights in {} (GGML block of {}) on slimbench's integer kernels",
                format.name(),
                format.block_len()
            ),
        ));
    }
    for (name, about) in [
        (INT8, "every Linear's weights in int8 (a scale per output channel and 64 inputs) times activations quantized per row at run time: slimbench's integer kernel (AVX-512 VNNI, AVX-VNNI, AVX2 or portable, whichever the CPU has; the record names it), CPU only"),
        ("<format>-all", "text and language models: every Linear and the token embeddings in the format (e.g. q8_0-all)"),
        ("f16, bf16", "Linear weights cast to half precision (saves memory; x86 widens to f32)"),
        ("prune-unstructured-S", "S% smallest weights per layer set to zero, fine-tuned with the mask; dense or CSR per layer by measured break-even"),
        ("prune-unstructured-global-S", "the same with one global magnitude threshold"),
        ("prune-structured-R[-l1]", "R% of hidden neurons (MLP) or channels (CNN) removed by L2 (L1) norm, fine-tuned; text and language models: R% of attention heads (key/value groups) and feed-forward neurons, no fine-tune"),
        ("prune-layers-N", "language models: the N transformer blocks whose removal changes the hidden state least on calibration text removed, no fine-tune"),
        ("distill", "a student of ~25% of the parameters trained on the teacher's soft targets (T 4, alpha 0.7)"),
        ("distill-control", "the same student trained on the labels alone"),
        (KV_Q8_0, "language models: the key/value cache in GGML's q8_0 blocks (32 values, an f16 scale: 1.06 bytes a value instead of 4), on the CPU engine"),
        ("A+B", "a chain, applied left to right, e.g. prune-structured-50+q8_0"),
    ] {
        list.push((name.to_string(), about.to_string()));
    }
    list
}

/// True when `technique` (a name) is a control arm; see [`Technique::is_control`]. A name that
/// does not parse is no control.
pub fn is_control(technique: &str) -> bool {
    technique.parse::<Technique>().is_ok_and(|t| t.is_control())
}

/// A one-line description of one step of a technique (`q8_0`, `prune-structured-50`, ...), from
/// the same table as `slimbench list`, with the step's own numbers; `None` when unknown.
pub fn describe_step(step: &str) -> Option<String> {
    let step = step.trim();
    let table = techniques();
    let find = |key: &str| table.iter().find(|(n, _)| n == key).map(|(_, a)| a.clone());
    if let Some(about) = find(step) {
        return Some(about);
    }
    if step == "f16" || step == "bf16" {
        return find("f16, bf16");
    }
    if let Some(format) = step.strip_suffix("-all").and_then(BlockFormat::from_name) {
        return find(format.name()).map(|a| format!("{a}, and the token embeddings too"));
    }
    let patterns = [
        (
            "prune-unstructured-global-",
            "prune-unstructured-global-S",
            "S",
        ),
        ("prune-unstructured-", "prune-unstructured-S", "S"),
        ("prune-structured-", "prune-structured-R[-l1]", "R"),
    ];
    if let Some(n) = step.strip_prefix("prune-layers-") {
        return find("prune-layers-N").map(|a| a.replacen("the N ", &format!("the {n} "), 1));
    }
    for (prefix, key, letter) in patterns {
        if let Some(rest) = step.strip_prefix(prefix) {
            let number = rest.trim_end_matches("-l1").trim_end_matches("-l2");
            let about = find(key)?.replacen(&format!("{letter}%"), &format!("{number}%"), 1);
            return Some(if rest.ends_with("-l1") {
                about.replace("by L2 (L1) norm", "by L1 norm")
            } else {
                about.replace("by L2 (L1) norm", "by L2 norm")
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_known_and_every_default_step_is_described() {
        assert!(is_control("distill-control"));
        assert!(is_control("distill-control+q8_0"));
        assert!(!is_control("distill"));
        let d = describe_step("prune-structured-50-l1").unwrap();
        assert!(
            d.starts_with("50% of hidden neurons") && d.contains("L1 norm"),
            "{d}"
        );
        assert!(describe_step("q8_0-all")
            .unwrap()
            .contains("token embeddings"));
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
