//! The flags that choose a plan, shared by `run` and `plan`, and their resolution over a config file.

use std::path::{Path, PathBuf};

use slimbench_models::catalog;

use super::split_list;
use crate::config::{load_config, RunConfig};
use crate::plan::{
    check_cuda_devices, Plan, Shapes, UsageError, DEFAULT_BATCH_SIZES, DEFAULT_DEVICES,
    DEFAULT_TEXT_BATCH_SIZES,
};
use slimbench_models::device::CUDA_BUILT;
use slimbench_models::text::workload::{is_text_model, DEFAULT_SEQ_LEN, DIR_PREFIX};

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
        "Batch sizes, comma-separated [default: {}; {} for text models]",
        join_numbers(DEFAULT_BATCH_SIZES),
        join_numbers(DEFAULT_TEXT_BATCH_SIZES)
    ))]
    pub batch_sizes: Vec<usize>,
    /// Tokens per text for text models, comma-separated; the help text gives the default.
    #[arg(long, value_delimiter = ',', help = format!(
        "Tokens per text for text models, comma-separated, e.g. 32,128,256 [default: {DEFAULT_SEQ_LEN}]"
    ))]
    pub seq_lens: Vec<usize>,
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
                slimbench_models::text::files::check_checkpoint(
                    &abs,
                    "give a folder with config.json, tokenizer.json and model.safetensors",
                )
                .map_err(|e| UsageError(format!("--model-dir {}: {e}", dir.display())))?;
                Ok(format!("{DIR_PREFIX}{}", abs.display()))
            })
            .collect()
    }

    /// The plan: flags over `config` over the default suite.
    pub fn resolve_plan(&self, config: &RunConfig) -> Result<Plan, UsageError> {
        let dirs = self.model_dirs()?;
        let mut models = if dirs.is_empty() || !self.models.is_empty() || config.models.is_some() {
            pick(&self.models, &config.models, catalog::DEFAULT_MODELS)
        } else {
            Vec::new()
        };
        models.extend(dirs);
        let seq_lens = if !self.seq_lens.is_empty() {
            Some(self.seq_lens.clone())
        } else {
            config.sequence_lengths.clone().filter(|s| !s.is_empty())
        };
        if seq_lens.is_some() && !models.iter().any(|m| is_text_model(m)) {
            return Err(UsageError(
                "--seq-lens (sequence_lengths): no model of this plan takes text; add --models minilm or remove it".into(),
            ));
        }
        let batch_sizes = if !self.batch_sizes.is_empty() {
            Some(self.batch_sizes.clone())
        } else {
            config.batch_sizes.clone()
        };
        for &b in batch_sizes.iter().flatten() {
            crate::limits::BATCH_SIZE.check_count(b)?;
        }
        for &n in seq_lens.iter().flatten() {
            crate::limits::SEQ_LEN.check_count(n)?;
        }
        let shapes = Shapes {
            batch_sizes: batch_sizes
                .clone()
                .unwrap_or_else(|| DEFAULT_BATCH_SIZES.to_vec()),
            text_batch_sizes: batch_sizes.unwrap_or_else(|| DEFAULT_TEXT_BATCH_SIZES.to_vec()),
            seq_lens: seq_lens.unwrap_or_else(|| vec![DEFAULT_SEQ_LEN]),
        };
        let devices = pick(&self.devices, &config.devices, DEFAULT_DEVICES);
        if CUDA_BUILT {
            check_cuda_devices(&devices, || {
                crate::meter::nvml::gpu_count().map_err(|e| e.to_string())
            })?;
        }
        Plan::new(
            &models,
            &pick(
                &self.techniques,
                &config.techniques,
                catalog::DEFAULT_TECHNIQUES,
            ),
            &devices,
            &shapes,
        )
    }
}
