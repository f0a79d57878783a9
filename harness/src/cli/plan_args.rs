//! The flags that choose a plan, shared by `run` and `plan`, and their resolution over a config file.

use std::path::{Path, PathBuf};

use slimbench_models::catalog;

use super::split_list;
use crate::config::{load_config, RunConfig};
use crate::error::UsageError;
use crate::plan::{check_cuda_devices, Plan, Shapes, DEFAULT_DEVICES};
use slimbench_models::device::CUDA_BUILT;
use slimbench_models::family::PlanDims;

/// Flags that pick the cells.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PlanArgs {
    /// A TOML file describing the run (see examples/bench.toml); flags override its keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Models, comma-separated (see `slimbench list`); the help text gives the default.
    #[arg(long, value_delimiter = ',', help = format!(
        "Models, comma-separated (see `slimbench list`) [default: {}]",
        catalog::DEFAULT_MODELS.join(",")
    ))]
    pub models: Vec<String>,
    /// Techniques, comma-separated; the help text gives the default suite.
    #[arg(long, value_delimiter = ',', help = format!(
        "Techniques or chains (A+B), comma-separated; `fp32` is the uncompressed baseline [default: {}]",
        catalog::DEFAULT_TECHNIQUES.join(",")
    ))]
    pub techniques: Vec<String>,
    /// Devices, comma-separated; the help text gives the default.
    #[arg(long, value_delimiter = ',', help = format!(
        "Devices, comma-separated [default: {}]",
        DEFAULT_DEVICES.join(",")
    ))]
    pub devices: Vec<String>,
    /// Batch sizes, comma-separated; the help text gives the defaults.
    #[arg(long, value_delimiter = ',', help = format!(
        "Batch sizes, comma-separated [default: each model's own: {}]",
        defaults_by_model(|d| Some(join_numbers(d.default_batch_sizes)))
    ))]
    pub batch_sizes: Vec<usize>,
    /// Tokens per text for text models (the prompt's length for language models), comma-separated;
    /// the help text gives the default.
    #[arg(long, visible_alias = "prompt-lens", value_delimiter = ',', help = format!(
        "Tokens per text for text models, and prompt tokens for language models (--prompt-lens), comma-separated, e.g. 32,128,256 [default: {}]",
        defaults_by_model(|d| d.default_seq_len.map(|n| n.to_string()))
    ))]
    pub seq_lens: Vec<usize>,
    /// Tokens generated after the prompt, for language models, comma-separated; the help text
    /// gives the default.
    #[arg(long, value_delimiter = ',', help = format!(
        "Tokens generated after the prompt, for language models, comma-separated [default: {}]",
        defaults_by_model(|d| d.default_gen_tokens.map(|n| n.to_string()))
    ))]
    pub gen_tokens: Vec<usize>,
    /// A folder with a BERT-family checkpoint (config.json, tokenizer.json, model.safetensors) to
    /// run as model `bert@DIR`; repeatable. Alone, it replaces the default models.
    #[arg(long, value_name = "DIR")]
    pub model_dir: Vec<PathBuf>,
}

/// `1,32` from `[1, 32]`.
pub fn join_numbers(numbers: &[usize]) -> String {
    numbers
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `digits-mlp, digits-cnn 1,32; minilm 1,8`: each catalogue model's default of one plan
/// dimension, models with the same default together; models without the dimension left out.
pub fn defaults_by_model(value: impl Fn(PlanDims) -> Option<String>) -> String {
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for (model, _) in catalog::models() {
        let Some(v) = catalog::plan_dims(model).ok().and_then(&value) else {
            continue;
        };
        match groups.iter_mut().find(|(g, _)| *g == v) {
            Some((_, models)) => models.push(model),
            None => groups.push((v, vec![model])),
        }
    }
    groups
        .iter()
        .map(|(v, models)| format!("{} {v}", models.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// True when `model`'s inputs have a length (a sequence-length dimension).
fn takes_seq_len(model: &str) -> bool {
    catalog::plan_dims(model).is_ok_and(|d| d.default_seq_len.is_some())
}

/// True when `model` generates tokens (a generated-tokens dimension).
fn generates(model: &str) -> bool {
    catalog::plan_dims(model).is_ok_and(|d| d.default_gen_tokens.is_some())
}

/// A plan dimension's values: the flag's, else the config file's, else `None`.
fn given(flag: &[usize], file: &Option<Vec<usize>>) -> Option<Vec<usize>> {
    if !flag.is_empty() {
        return Some(flag.to_vec());
    }
    file.clone().filter(|s| !s.is_empty())
}

/// A usage error (`problem`, then the catalogue's models that have the dimension) when a
/// dimension is given but no model of the plan has it.
fn only_for(
    values: &Option<Vec<usize>>,
    models: &[String],
    has: fn(&str) -> bool,
    problem: &str,
) -> Result<(), UsageError> {
    if values.is_none() || models.iter().any(|m| has(m)) {
        return Ok(());
    }
    let with: Vec<&str> = catalog::models()
        .into_iter()
        .map(|(m, _)| m)
        .filter(|m| has(m))
        .collect();
    Err(UsageError(format!(
        "{problem}; add --models {} or remove it",
        with.join(",")
    )))
}

/// Reads the config file if one is given.
pub fn load_optional_config(path: Option<&Path>) -> Result<RunConfig, UsageError> {
    path.map(load_config)
        .transpose()
        .map(Option::unwrap_or_default)
}

fn pick(flag: &[String], file: &Option<Vec<String>>, default: &[&str]) -> Vec<String> {
    let flag = split_list(flag);
    if !flag.is_empty() {
        return flag;
    }
    match file {
        Some(list) if !list.is_empty() => list.clone(),
        _ => default.iter().map(|s| s.to_string()).collect(),
    }
}

impl PlanArgs {
    /// True when any plan flag was given.
    pub fn any_given(&self) -> bool {
        self.config.is_some()
            || !self.models.is_empty()
            || !self.techniques.is_empty()
            || !self.devices.is_empty()
            || !self.batch_sizes.is_empty()
            || !self.seq_lens.is_empty()
            || !self.gen_tokens.is_empty()
            || !self.model_dir.is_empty()
    }

    fn model_dirs(&self) -> Result<Vec<String>, UsageError> {
        self.model_dir
            .iter()
            .map(|dir| {
                let abs = dir.canonicalize().map_err(|e| {
                    UsageError(format!(
                        "--model-dir {}: {e}; give a folder with config.json, tokenizer.json and model.safetensors",
                        dir.display()
                    ))
                })?;
                if !abs.is_dir() {
                    return Err(UsageError(format!(
                        "--model-dir {}: not a folder",
                        dir.display()
                    )));
                }
                // A broken checkpoint is a usage error now, before any run folder exists.
                catalog::model_from_dir(&abs)
                    .map_err(|e| UsageError(format!("--model-dir {}: {e}", dir.display())))
            })
            .collect()
    }

    /// The plan: flags over `config` over the default suite.
    pub fn resolve_plan(&self, config: &RunConfig) -> Result<Plan, UsageError> {
        let dirs = self.model_dirs()?;
        let mut models =
            if dirs.is_empty() || !self.models.is_empty() || config.plan.models.is_some() {
                pick(&self.models, &config.plan.models, catalog::DEFAULT_MODELS)
            } else {
                Vec::new()
            };
        models.extend(dirs);
        let seq_lens = given(&self.seq_lens, &config.plan.sequence_lengths);
        only_for(
            &seq_lens,
            &models,
            takes_seq_len,
            "--seq-lens (sequence_lengths): no model of this plan takes text",
        )?;
        let gen_tokens = given(&self.gen_tokens, &config.plan.gen_tokens);
        only_for(
            &gen_tokens,
            &models,
            generates,
            "--gen-tokens (gen_tokens): no model of this plan generates text",
        )?;
        let batch_sizes = if !self.batch_sizes.is_empty() {
            Some(self.batch_sizes.clone())
        } else {
            config.plan.batch_sizes.clone()
        };
        for &b in batch_sizes.iter().flatten() {
            crate::limits::BATCH_SIZE.check_count(b)?;
        }
        for &n in seq_lens.iter().flatten() {
            crate::limits::SEQ_LEN.check_count(n)?;
        }
        for &n in gen_tokens.iter().flatten() {
            crate::limits::GEN_TOKENS.check_count(n)?;
        }
        let shapes = Shapes {
            batch_sizes,
            seq_lens,
            gen_tokens,
        };
        let devices = pick(&self.devices, &config.plan.devices, DEFAULT_DEVICES);
        if CUDA_BUILT {
            check_cuda_devices(&devices, || {
                crate::meter::nvml::gpu_count().map_err(|e| e.to_string())
            })?;
        }
        Plan::new(
            &models,
            &pick(
                &self.techniques,
                &config.plan.techniques,
                catalog::DEFAULT_TECHNIQUES,
            ),
            &devices,
            &shapes,
        )
    }
}
