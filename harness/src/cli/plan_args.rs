//! The flags that choose a plan, shared by `run` and `plan`, and their resolution over a config file.

use std::path::{Path, PathBuf};

use slimbench_models::catalog;

use super::split_list;
use crate::config::{load_config, RunConfig};
use crate::plan::{Plan, UsageError};

/// Flags that pick the cells.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PlanArgs {
    /// A TOML file describing the run (see examples/bench.toml); flags override its keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Models, comma-separated (see `slimbench list`) [default: digits-mlp].
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Techniques, comma-separated; `fp32` is the uncompressed baseline [default: fp32,q8_0,q4_0].
    #[arg(long, value_delimiter = ',')]
    pub techniques: Vec<String>,
    /// Devices, comma-separated [default: cpu].
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<String>,
    /// Batch sizes, comma-separated [default: 1,32].
    #[arg(long, value_delimiter = ',')]
    pub batch_sizes: Vec<usize>,
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
    }

    /// The plan: flags over `config` over the default suite.
    pub fn resolve_plan(&self, config: &RunConfig) -> Result<Plan, UsageError> {
        if config
            .sequence_lengths
            .as_ref()
            .is_some_and(|s| !s.is_empty())
        {
            return Err(UsageError(
                "sequence_lengths: no model of this build takes text (digits-mlp takes 8x8 images); remove the key".into(),
            ));
        }
        let batch_sizes = if !self.batch_sizes.is_empty() {
            self.batch_sizes.clone()
        } else {
            config.batch_sizes.clone().unwrap_or_else(|| vec![1, 32])
        };
        Plan::new(
            &pick(&self.models, &config.models, catalog::DEFAULT_MODELS),
            &pick(
                &self.techniques,
                &config.techniques,
                catalog::DEFAULT_TECHNIQUES,
            ),
            &pick(&self.devices, &config.devices, &["cpu"]),
            &batch_sizes,
        )
    }
}
