//! The catalogue of technique steps: each kind of step defined once, with its name pattern, the
//! family of techniques it belongs to, what it does, whether it is a control arm, how its name
//! parses and how a parsed step is named again. The chain parser, `slimbench list`, the help and
//! error texts and the report's glossary all read this table; adding a step is one entry here
//! plus its implementation in the families.

use std::fmt;
use std::sync::LazyLock;

use serde::Serialize;

use crate::error::{ModelError, Result};
use crate::kernels::blocks::BlockFormat;
use crate::pruning::{Norm, Scope};

use super::steps::{HalfType, PostStep, Step, TrainingStep};

/// The uncompressed baseline technique.
pub const BASELINE: &str = "fp32";

/// The name of slimbench's own int8 technique (see [`PostStep::Int8`]).
pub const INT8: &str = "int8";

/// The step that keeps a language model's key/value cache in `q8_0` blocks (see
/// [`super::Technique::kv_cache_q8_0`]).
pub const KV_Q8_0: &str = "kv-q8_0";

/// The family of techniques a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepFamily {
    /// The uncompressed model.
    Baseline,
    /// Weights stored in fewer bits (block formats, `int8`).
    Quantization,
    /// Weights cast to a half-precision float.
    Cast,
    /// Weights, neurons, heads or blocks removed.
    Pruning,
    /// A smaller student trained from the model.
    Distillation,
    /// How a language model keeps its key/value cache.
    Cache,
}

impl StepFamily {
    /// The family's name as the report writes it.
    pub fn name(self) -> &'static str {
        match self {
            StepFamily::Baseline => "baseline",
            StepFamily::Quantization => "quantization",
            StepFamily::Cast => "cast",
            StepFamily::Pruning => "pruning",
            StepFamily::Distillation => "distillation",
            StepFamily::Cache => "kv cache",
        }
    }
}

/// The values that fill a step's name and description (`("S", "50")`).
pub(super) type Values = Vec<(&'static str, String)>;

type Parser = Box<dyn Fn(&str) -> Option<Result<Step>> + Send + Sync>;
type Namer = Box<dyn Fn(&Step) -> Option<(String, Values)> + Send + Sync>;

/// One kind of step: everything slimbench knows of it apart from how a family applies it.
pub struct StepDef {
    /// The name pattern, for help and error texts (`prune-unstructured-<1..99>`).
    pub syntax: String,
    /// The family of techniques.
    pub family: StepFamily,
    /// For a control arm, the name of the step it controls (`distill` for `distill-control`):
    /// a control measures what that step adds and is never recommended.
    pub controls: Option<&'static str>,
    /// What the step does, with `{X}` where the step's own values go.
    about: String,
    /// What `{X}` reads as in the catalogue line (`("S", "S")`).
    generic: Values,
    /// The step for a name of this kind (`None`: another kind's name).
    parse: Parser,
    /// The canonical name and values of a step of this kind (`None`: another kind's step).
    name: Namer,
}

impl fmt::Debug for StepDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepDef")
            .field("syntax", &self.syntax)
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

impl StepDef {
    /// What the step does in general, for `slimbench list` (`S% smallest weights ...`).
    pub fn about(&self) -> String {
        fill(&self.about, &self.generic)
    }

    /// What one step of this kind does, with its own values (`50% smallest weights ...`).
    pub(super) fn describe(&self, values: &Values) -> String {
        fill(&self.about, values)
    }

    /// The step a name of this kind stands for; `None` when the name is another kind's.
    pub(super) fn parse(&self, name: &str) -> Option<Result<Step>> {
        (self.parse)(name)
    }

    /// The canonical name and values of `step`; `None` when it is another kind's step.
    pub(super) fn name(&self, step: &Step) -> Option<(String, Values)> {
        (self.name)(step)
    }
}

fn fill(template: &str, values: &Values) -> String {
    values
        .iter()
        .fold(template.to_string(), |text, (key, value)| {
            text.replace(&format!("{{{key}}}"), value)
        })
}

/// A step definition with no values to fill.
fn fixed(
    name: &'static str,
    family: StepFamily,
    about: &str,
    step: impl Fn() -> Step + Send + Sync + 'static,
    is: impl Fn(&Step) -> bool + Send + Sync + 'static,
) -> StepDef {
    StepDef {
        syntax: name.to_string(),
        family,
        controls: None,
        about: about.to_string(),
        generic: Vec::new(),
        parse: Box::new(move |n| (n == name).then(|| Ok(step()))),
        name: Box::new(move |s| is(s).then(|| (name.to_string(), Vec::new()))),
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

fn percent_name(fraction: f64) -> String {
    ((fraction * 100.0).round() as u32).to_string()
}

/// The integer kernel's wording, shared by the block formats and `int8`.
const INTEGER_KERNEL: &str = "slimbench's integer kernels";

fn block_format(format: BlockFormat) -> StepDef {
    let quantize = move |embeddings| Step::Post(PostStep::Quantize { format, embeddings });
    StepDef {
        syntax: format.name().to_string(),
        family: StepFamily::Quantization,
        controls: None,
        about: format!(
            "every Linear's weights in {} (GGML block of {}) on {INTEGER_KERNEL}",
            format.name(),
            format.block_len()
        ),
        generic: Vec::new(),
        parse: Box::new(move |n| (n == format.name()).then(|| Ok(quantize(false)))),
        name: Box::new(move |s| {
            (*s == quantize(false)).then(|| (format.name().to_string(), Vec::new()))
        }),
    }
}

fn block_format_all() -> StepDef {
    StepDef {
        syntax: "<format>-all".to_string(),
        family: StepFamily::Quantization,
        controls: None,
        about: "text and language models: every Linear's weights in {format} (GGML block of {block}) on slimbench's integer kernels, and the token embeddings too".to_string(),
        generic: vec![("format", "the format".into()), ("block", "32 or 256".into())],
        parse: Box::new(|n| {
            let format = n.strip_suffix("-all").and_then(BlockFormat::from_name)?;
            Some(Ok(Step::Post(PostStep::Quantize {
                format,
                embeddings: true,
            })))
        }),
        name: Box::new(|s| match s {
            Step::Post(PostStep::Quantize {
                format,
                embeddings: true,
            }) => Some((
                format!("{}-all", format.name()),
                vec![
                    ("format", format.name().to_string()),
                    ("block", format.block_len().to_string()),
                ],
            )),
            _ => None,
        }),
    }
}

fn cast() -> StepDef {
    StepDef {
        syntax: "f16, bf16".to_string(),
        family: StepFamily::Cast,
        controls: None,
        about: "Linear weights cast to {type} (saves memory; bf16 multiplies natively where the CPU has AVX512_BF16, otherwise the weights are widened to f32 as the kernels read them)".to_string(),
        generic: vec![("type", "half precision".into())],
        parse: Box::new(|n| {
            let dtype = [HalfType::F16, HalfType::Bf16]
                .into_iter()
                .find(|d| d.name() == n)?;
            Some(Ok(Step::Post(PostStep::Cast { dtype })))
        }),
        name: Box::new(|s| match s {
            Step::Post(PostStep::Cast { dtype }) => Some((
                dtype.name().to_string(),
                vec![("type", dtype.name().to_string())],
            )),
            _ => None,
        }),
    }
}

fn prune_unstructured(scope: Scope) -> StepDef {
    let (prefix, about) = match scope {
        Scope::Global => (
            "prune-unstructured-global-",
            "{S}% of the weights set to zero by one global magnitude threshold, fine-tuned with the mask; dense or CSR per layer by measured break-even",
        ),
        Scope::PerLayer => (
            "prune-unstructured-",
            "{S}% smallest weights per layer set to zero, fine-tuned with the mask; dense or CSR per layer by measured break-even",
        ),
    };
    StepDef {
        syntax: format!("{prefix}<1..99>"),
        family: StepFamily::Pruning,
        controls: None,
        about: about.to_string(),
        generic: vec![("S", "S".into())],
        parse: Box::new(move |n| {
            let rest = n.strip_prefix(prefix)?;
            // `prune-unstructured-global-50` is the global kind's, not a per-layer `global-50`.
            if scope == Scope::PerLayer && rest.starts_with("global-") {
                return None;
            }
            Some(percent(rest, n).map(|sparsity| {
                Step::Training(TrainingStep::PruneUnstructured { sparsity, scope })
            }))
        }),
        name: Box::new(move |s| match s {
            Step::Training(TrainingStep::PruneUnstructured {
                sparsity,
                scope: sc,
            }) if *sc == scope => {
                let s = percent_name(*sparsity);
                Some((format!("{prefix}{s}"), vec![("S", s)]))
            }
            _ => None,
        }),
    }
}

fn prune_oneshot() -> StepDef {
    const PREFIX: &str = "prune-oneshot-";
    StepDef {
        syntax: format!("{PREFIX}<1..99>"),
        family: StepFamily::Pruning,
        controls: None,
        about: "{S}% smallest weights of every Linear set to zero, per layer, after training and without fine-tuning (one-shot magnitude pruning, the baseline of one-shot methods); weights stay dense f32, so it saves no time or memory: it measures the quality that sparsity costs without retraining".to_string(),
        generic: vec![("S", "S".into())],
        parse: Box::new(|n| {
            let rest = n.strip_prefix(PREFIX)?;
            Some(percent(rest, n).map(|sparsity| Step::Post(PostStep::PruneOneShot { sparsity })))
        }),
        name: Box::new(|s| match s {
            Step::Post(PostStep::PruneOneShot { sparsity }) => {
                let s = percent_name(*sparsity);
                Some((format!("{PREFIX}{s}"), vec![("S", s)]))
            }
            _ => None,
        }),
    }
}

fn prune_structured() -> StepDef {
    StepDef {
        syntax: "prune-structured-<1..99>[-l1]".to_string(),
        family: StepFamily::Pruning,
        controls: None,
        about: "{R}% of hidden neurons (MLP) or channels (CNN) removed by {norm} norm, fine-tuned; text and language models: {R}% of attention heads (key/value groups) and feed-forward neurons, no fine-tune".to_string(),
        generic: vec![("R", "R".into()), ("norm", "L2 (L1)".into())],
        parse: Box::new(|n| {
            let rest = n.strip_prefix("prune-structured-")?;
            let (num, norm) = match rest.strip_suffix("-l1") {
                Some(num) => (num, Norm::L1),
                // `-l2` is the default norm's other spelling.
                None => (rest.strip_suffix("-l2").unwrap_or(rest), Norm::L2),
            };
            Some(percent(num, n).map(|ratio| {
                Step::Training(TrainingStep::PruneStructured { ratio, norm })
            }))
        }),
        name: Box::new(|s| match s {
            Step::Training(TrainingStep::PruneStructured { ratio, norm }) => {
                let r = percent_name(*ratio);
                let (suffix, norm) = match norm {
                    Norm::L1 => ("-l1", "L1"),
                    Norm::L2 => ("", "L2"),
                };
                Some((
                    format!("prune-structured-{r}{suffix}"),
                    vec![("R", r), ("norm", norm.to_string())],
                ))
            }
            _ => None,
        }),
    }
}

fn prune_layers() -> StepDef {
    StepDef {
        syntax: "prune-layers-<N>".to_string(),
        family: StepFamily::Pruning,
        controls: None,
        about: "language models: the {N} transformer blocks whose removal changes the hidden state least on calibration text removed, no fine-tune".to_string(),
        generic: vec![("N", "N".into())],
        parse: Box::new(|n| {
            let rest = n.strip_prefix("prune-layers-")?;
            Some(
                rest.parse::<usize>()
                    .ok()
                    .filter(|c| *c >= 1)
                    .map(|count| Step::Training(TrainingStep::DropLayers { count }))
                    .ok_or_else(|| {
                        ModelError::Invalid(format!(
                            "{n}: {rest:?} is not a count of blocks of at least 1"
                        ))
                    }),
            )
        }),
        name: Box::new(|s| match s {
            Step::Training(TrainingStep::DropLayers { count }) => Some((
                format!("prune-layers-{count}"),
                vec![("N", count.to_string())],
            )),
            _ => None,
        }),
    }
}

fn distill(control: bool) -> StepDef {
    let (name, about) = if control {
        (
            "distill-control",
            "the same student trained on the labels alone",
        )
    } else {
        (
            "distill",
            "a student of ~25% of the parameters trained on the teacher's soft targets (T 4, alpha 0.7)",
        )
    };
    let step = move || Step::Training(TrainingStep::Distill { control });
    let mut def = fixed(name, StepFamily::Distillation, about, step, move |s| {
        *s == step()
    });
    def.controls = control.then_some("distill");
    def
}

/// Every kind of step, in the order `slimbench list` prints them and names are tried.
pub fn catalogue() -> &'static [StepDef] {
    static CATALOGUE: LazyLock<Vec<StepDef>> = LazyLock::new(|| {
        let mut defs = vec![StepDef {
            syntax: BASELINE.to_string(),
            family: StepFamily::Baseline,
            controls: None,
            about: "the uncompressed model, f32 weights".to_string(),
            generic: Vec::new(),
            // The empty chain: the chain parser reads `fp32` itself.
            parse: Box::new(|_| None),
            name: Box::new(|_| None),
        }];
        defs.extend(BlockFormat::ALL.into_iter().map(block_format));
        defs.push(block_format_all());
        defs.push(fixed(
            INT8,
            StepFamily::Quantization,
            "every Linear's weights in int8 (a scale per output channel and 64 inputs) times activations quantized per row at run time: slimbench's integer kernel (AVX-512 VNNI, AVX-VNNI, AVX2 or portable, whichever the CPU has; the record names it), CPU only",
            || Step::Post(PostStep::Int8),
            |s| *s == Step::Post(PostStep::Int8),
        ));
        defs.push(cast());
        defs.push(prune_unstructured(Scope::PerLayer));
        defs.push(prune_unstructured(Scope::Global));
        defs.push(prune_oneshot());
        defs.push(prune_structured());
        defs.push(prune_layers());
        defs.push(distill(false));
        defs.push(distill(true));
        defs.push(fixed(
            KV_Q8_0,
            StepFamily::Cache,
            "language models: the key/value cache in GGML's q8_0 blocks (32 values, an f16 scale: 1.06 bytes a value instead of 4), on the CPU engine",
            || Step::KvCacheQ8_0,
            |s| *s == Step::KvCacheQ8_0,
        ));
        defs
    });
    &CATALOGUE
}

/// The grammar line for chains, after the steps in help and `slimbench list`.
pub const CHAIN_SYNTAX: &str =
    "<technique>+<technique> (a quantization or cast last, then kv-q8_0)";

/// The step a name stands for, with its definition; an error naming every valid step when no
/// definition knows it.
pub(super) fn parse_step(name: &str) -> Result<(&'static StepDef, Step)> {
    for def in catalogue() {
        if let Some(step) = def.parse(name) {
            return Ok((def, step?));
        }
    }
    Err(ModelError::Invalid(format!(
        "unknown technique {name:?}; valid techniques: {}",
        technique_names().join(", ")
    )))
}

/// The definition, canonical name and values of a step.
pub(super) fn name_step(step: &Step) -> Option<(&'static StepDef, String, Values)> {
    catalogue()
        .iter()
        .find_map(|def| def.name(step).map(|(name, values)| (def, name, values)))
}

/// The technique names and patterns, for help and error messages.
pub fn technique_names() -> Vec<String> {
    catalogue()
        .iter()
        .map(|d| d.syntax.clone())
        .chain([CHAIN_SYNTAX.to_string()])
        .collect()
}

/// Techniques with a one-line description, for `slimbench list`.
pub fn techniques() -> Vec<(String, String)> {
    catalogue()
        .iter()
        .map(|d| (d.syntax.clone(), d.about()))
        .chain([(
            "A+B".to_string(),
            "a chain, applied left to right, e.g. prune-structured-50+q8_0".to_string(),
        )])
        .collect()
}
