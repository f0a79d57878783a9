//! The names a plan may use: models, techniques (and chains of them), devices.
//!
//! Technique grammar (`slimbench list` prints it):
//! - `fp32`: the uncompressed baseline.
//! - `q8_0`, `q6k`, `q5k`, `q5_1`, `q5_0`, `q4k`, `q4_1`, `q4_0`: weight quantization of every
//!   fully connected layer (per-layer fallback where the block does not fit).
//! - `<format>-all` (text models): the same, and the token embedding table too.
//! - `f16`, `bf16`: half-precision casts of the fully connected weights.
//! - `prune-unstructured-S`, `prune-unstructured-global-S`: magnitude pruning to S% zeros (1..99),
//!   per layer or global, with a fine-tune that keeps the mask; each layer runs dense or CSR.
//! - `prune-structured-R`, `prune-structured-R-l1`: removal of R% (1..99) of the hidden neurons
//!   (MLP) or channels (CNN) by L2 (or L1) norm, with a fine-tune.
//! - `distill`: a student of about a quarter of the teacher's parameters trained on its soft
//!   targets (T 4, alpha 0.7); `distill-control`: the same student on the labels alone.
//! - chains `A+B+...`: applied left to right; a quantization or cast may only come last
//!   (for example `prune-structured-50+q8_0`, `distill+q8_0`).

use candle_core::quantized::GgmlDType;
use candle_core::DType;
use serde::Serialize;

use crate::compress::prune::{Norm, Scope};
use crate::compress::quantize::{format_by_name, QUANT_FORMATS};
use crate::error::{ModelError, Result};

/// Models in the zoo, with a one-line description.
pub const MODELS: &[(&str, &str)] = &[
    (
        "digits-mlp",
        "MLP 64-256-128-10 on the UCI digits (8x8 images), 50,826 parameters, trained here from a fixed seed",
    ),
    (
        "digits-cnn",
        "CNN conv3x3(8)-conv3x3(16)-maxpool-linear on the UCI digits, 3,818 parameters, trained here from a fixed seed",
    ),
    (
        "minilm",
        "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, hidden 384, 22.7M parameters); `slimbench fetch minilm` first",
    ),
];

/// The uncompressed baseline technique.
pub const BASELINE: &str = "fp32";

/// The technique of slimbench's own int8 kernel (see [`Step::Int8`]).
pub const INT8: &str = "int8";

/// Devices this build can run on, with a one-line description.
pub const DEVICES: &[(&str, &str)] = &[
    ("cpu", "the host CPU, through candle's CPU backend"),
    (
        "cuda:N",
        "NVIDIA GPU N through candle's CUDA backend (needs the cuda feature and the driver)",
    ),
];

/// The techniques of the default suite: every family, slimbench's own `int8` and four chains.
pub const DEFAULT_TECHNIQUES: &[&str] = &[
    "fp32",
    "int8",
    "q8_0",
    "q4_0",
    "f16",
    "prune-unstructured-90",
    "prune-structured-50",
    "distill",
    "distill-control",
    "prune-structured-50+int8",
    "prune-structured-50+q8_0",
    "distill+int8",
    "distill+q8_0",
];

/// The models of the default suite.
pub const DEFAULT_MODELS: &[&str] = &["digits-mlp", "digits-cnn"];

/// One step of a technique chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Magnitude pruning to `sparsity` (0..1).
    PruneUnstructured {
        /// Fraction of weights set to zero.
        sparsity: f64,
        /// Per layer or global threshold.
        scope: Scope,
    },
    /// Removal of neurons or channels.
    PruneStructured {
        /// Fraction removed.
        ratio: f64,
        /// Ranking norm.
        norm: Norm,
    },
    /// Distillation into the model's default student (`control`: labels only).
    Distill {
        /// True for the labels-only control.
        control: bool,
    },
    /// Block quantization of the fully connected weights.
    Quantize {
        /// The format's name.
        format: String,
        /// Also the token embeddings (`<format>-all`; text models only).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        embeddings: bool,
    },
    /// int8 weights (one scale per output channel and group of inputs) times activations
    /// quantized per row at run time, through slimbench's own kernel.
    Int8,
    /// Half-precision cast of the fully connected weights.
    Cast {
        /// `f16` or `bf16`.
        dtype: String,
    },
}

impl Step {
    /// True for steps applied after training (quantization, casts), which must come last.
    pub fn is_post_training(&self) -> bool {
        matches!(self, Step::Quantize { .. } | Step::Cast { .. } | Step::Int8)
    }

    /// The block format of a quantization step.
    pub fn quant_format(&self) -> Option<GgmlDType> {
        match self {
            Step::Quantize { format, .. } => format_by_name(format),
            _ => None,
        }
    }

    /// The dtype of a cast step.
    pub fn cast_dtype(&self) -> Option<DType> {
        match self {
            Step::Cast { dtype } if dtype == "f16" => Some(DType::F16),
            Step::Cast { dtype } if dtype == "bf16" => Some(DType::BF16),
            _ => None,
        }
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

fn parse_step(name: &str) -> Result<Step> {
    if format_by_name(name).is_some() {
        return Ok(Step::Quantize {
            format: name.to_string(),
            embeddings: false,
        });
    }
    if let Some(format) = name
        .strip_suffix("-all")
        .filter(|f| format_by_name(f).is_some())
    {
        return Ok(Step::Quantize {
            format: format.to_string(),
            embeddings: true,
        });
    }
    if name == INT8 {
        return Ok(Step::Int8);
    }
    if name == "f16" || name == "bf16" {
        return Ok(Step::Cast {
            dtype: name.to_string(),
        });
    }
    if name == "distill" || name == "distill-control" {
        return Ok(Step::Distill {
            control: name == "distill-control",
        });
    }
    if let Some(rest) = name.strip_prefix("prune-unstructured-global-") {
        return Ok(Step::PruneUnstructured {
            sparsity: percent(rest, name)?,
            scope: Scope::Global,
        });
    }
    if let Some(rest) = name.strip_prefix("prune-unstructured-") {
        return Ok(Step::PruneUnstructured {
            sparsity: percent(rest, name)?,
            scope: Scope::PerLayer,
        });
    }
    if let Some(rest) = name.strip_prefix("prune-structured-") {
        let (num, norm) = match rest.strip_suffix("-l1") {
            Some(n) => (n, Norm::L1),
            None => (rest.strip_suffix("-l2").unwrap_or(rest), Norm::L2),
        };
        return Ok(Step::PruneStructured {
            ratio: percent(num, name)?,
            norm,
        });
    }
    Err(ModelError::Invalid(format!(
        "unknown technique {name:?}; valid techniques: {}",
        technique_names().join(", ")
    )))
}

/// Parses a technique (a chain of steps joined by `+`); `fp32` is the empty chain.
pub fn parse_technique(name: &str) -> Result<Vec<Step>> {
    if name == BASELINE {
        return Ok(Vec::new());
    }
    let steps = name
        .split('+')
        .map(|s| parse_step(s.trim()))
        .collect::<Result<Vec<_>>>()?;
    if let Some(pos) = steps.iter().position(Step::is_post_training) {
        if pos + 1 != steps.len() {
            return Err(ModelError::Invalid(format!(
                "technique {name:?}: a quantization or cast must be the last step of a chain"
            )));
        }
    }
    Ok(steps)
}

/// The technique names and patterns, for help and error messages.
pub fn technique_names() -> Vec<String> {
    let mut list = vec![BASELINE.to_string()];
    list.extend(QUANT_FORMATS.iter().map(|(n, _)| n.to_string()));
    list.push("<format>-all (text models: the token embeddings too)".to_string());
    list.extend(
        [
            INT8,
            "f16",
            "bf16",
            "prune-unstructured-<1..99>",
            "prune-unstructured-global-<1..99>",
            "prune-structured-<1..99>[-l1]",
            "distill",
            "distill-control",
            "<technique>+<technique> (a quantization or cast last)",
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
    for (name, format) in QUANT_FORMATS {
        list.push((
            name.to_string(),
            format!(
                "every Linear's weights in {name} (GGML block of {}) on slimbench's integer kernels",
                format.block_size()
            ),
        ));
    }
    for (name, about) in [
        (INT8, "every Linear's weights in int8 (a scale per output channel and 64 inputs) times activations quantized per row at run time: slimbench's AVX-512 VNNI kernel, CPU only"),
        ("<format>-all", "text models: every Linear and the token embeddings in the format (e.g. q8_0-all)"),
        ("f16, bf16", "Linear weights cast to half precision (saves memory; x86 widens to f32)"),
        ("prune-unstructured-S", "S% smallest weights per layer set to zero, fine-tuned with the mask; dense or CSR per layer by measured break-even"),
        ("prune-unstructured-global-S", "the same with one global magnitude threshold"),
        ("prune-structured-R[-l1]", "R% of hidden neurons (MLP) or channels (CNN) removed by L2 (L1) norm, fine-tuned"),
        ("distill", "a student of ~25% of the parameters trained on the teacher's soft targets (T 4, alpha 0.7)"),
        ("distill-control", "the same student trained on the labels alone"),
        ("A+B", "a chain, applied left to right, e.g. prune-structured-50+q8_0"),
    ] {
        list.push((name.to_string(), about.to_string()));
    }
    list
}

/// The control arm of an experiment: a technique that exists to measure what another one adds
/// (`distill-control`: the student trained on labels alone), never a variant to ship.
pub fn is_control(technique: &str) -> bool {
    technique
        .split('+')
        .any(|step| step.trim() == "distill-control")
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
    if let Some(format) = step
        .strip_suffix("-all")
        .filter(|f| format_by_name(f).is_some())
    {
        return find(format).map(|a| format!("{a}, and the token embeddings too"));
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

/// True when `name` is a known model, or a BERT folder (`bert@DIR`, from `--model-dir`).
pub fn is_model(name: &str) -> bool {
    MODELS.iter().any(|(n, _)| *n == name) || name.starts_with(crate::text::workload::DIR_PREFIX)
}

/// True when `name` is a device name a plan may use (`cpu`, `cuda:N`); whether CUDA is built in
/// and present is checked when the device is opened.
pub fn is_device(name: &str) -> bool {
    crate::device::is_device_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_known_and_every_default_step_is_described() {
        assert!(is_control("distill-control"));
        assert!(is_control("distill-control+q8_0"));
        assert!(!is_control("distill"));
        for t in DEFAULT_TECHNIQUES {
            for step in t.split('+') {
                assert!(describe_step(step).is_some(), "{step}");
            }
        }
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
        assert!(parse_technique("fp32").unwrap().is_empty());
        let steps = parse_technique("prune-structured-50+q8_0").unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(
            steps[0],
            Step::PruneStructured {
                ratio: 0.5,
                norm: Norm::L2
            }
        );
        assert!(parse_technique("q8_0+distill").is_err());
        assert!(parse_technique("prune-unstructured-100").is_err());
        let e = parse_technique("q3").unwrap_err().to_string();
        assert!(e.contains("valid techniques") && e.contains("q8_0"), "{e}");
        for t in DEFAULT_TECHNIQUES {
            parse_technique(t).unwrap();
        }
    }
}
