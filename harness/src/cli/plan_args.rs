//! The flags that choose a plan, shared by `run` and `plan`, and their resolution over a config file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use slimbench_models::catalog;

use super::split_list;
use crate::config::{load_config, RunConfig};
use crate::error::UsageError;
use crate::plan::{check_cuda_devices, Plan, Shapes, DEFAULT_DEVICES};
use slimbench_models::device::CUDA_BUILT;
use slimbench_models::dimension::{self, Dimension};
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
    /// Engines, comma-separated: `slimbench` (its own), `ort` (ONNX Runtime, after `slimbench
    /// fetch onnxruntime`); each cell runs on each.
    #[arg(long, value_delimiter = ',', help = format!(
        "Engines, comma-separated: {} [default: slimbench]",
        slimbench_models::engine::ENGINES
            .iter()
            .map(|(n, about)| format!("{n} ({about})"))
            .collect::<Vec<_>>()
            .join("; ")
    ))]
    pub engines: Vec<String>,
    /// Batch sizes, comma-separated; the help text gives the defaults.
    #[arg(long, value_delimiter = ',', help = format!(
        "Batch sizes, comma-separated [default: each model's own: {}]",
        defaults_by_model(|d| Some(join_numbers(d.default_batch_sizes)))
    ))]
    pub batch_sizes: Vec<usize>,
    /// Each plan dimension beyond the batch size (`--seq-lens`, `--gen-tokens`, ...), one flag
    /// a dimension, made from its definition.
    #[command(flatten)]
    pub dims: DimensionFlags,
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

/// A usage error when `dimension` is given but no model of the plan has it, naming the
/// catalogue's models that have it.
fn only_for(dimension: &Dimension, models: &[String]) -> Result<(), UsageError> {
    let has = |m: &str| catalog::plan_dims(m).is_ok_and(|d| d.has(dimension));
    if models.iter().any(|m| has(m)) {
        return Ok(());
    }
    let with: Vec<&str> = catalog::models()
        .into_iter()
        .map(|(m, _)| m)
        .filter(|m| has(m))
        .collect();
    Err(UsageError(format!(
        "{} ({}): no model of this plan has a {} dimension; add --models {} or remove it",
        dimension.flag,
        dimension.config_key,
        dimension.name,
        with.join(",")
    )))
}

/// The values given of each plan dimension beyond the batch size, by its key: one flag a
/// dimension (its `flag`, `alias` and help from [`slimbench_models::dimension`]), so a family's
/// new dimension is a new flag without a field here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DimensionFlags(pub BTreeMap<&'static str, Vec<usize>>);

impl clap::FromArgMatches for DimensionFlags {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut given = BTreeMap::new();
        for d in dimension::all() {
            let values = match matches.try_get_many::<usize>(d.key) {
                Ok(values) => values,
                // A dimension registered after the command was built has no flag to give.
                Err(clap::parser::MatchesError::UnknownArgument { .. }) => None,
                Err(e) => {
                    return Err(clap::Error::raw(
                        clap::error::ErrorKind::InvalidValue,
                        format!("{}: {e}", d.flag),
                    ))
                }
            };
            if let Some(values) = values {
                given.insert(d.key, values.copied().collect());
            }
        }
        Ok(Self(given))
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        let given = Self::from_arg_matches(matches)?;
        self.0.extend(given.0);
        Ok(())
    }
}

impl clap::Args for DimensionFlags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        dimension::all().into_iter().fold(cmd, |cmd, d| {
            let defaults = defaults_by_model(|p| p.defaults(d).map(join_numbers));
            let mut arg = clap::Arg::new(d.key)
                .long(d.flag.trim_start_matches('-'))
                .value_name("VALUES")
                .value_delimiter(',')
                .action(clap::ArgAction::Append)
                .value_parser(clap::value_parser!(usize))
                .help(format!("{} [default: {defaults}]", d.help));
            if let Some(alias) = d.alias {
                arg = arg.visible_alias(alias.trim_start_matches('-'));
            }
            cmd.arg(arg)
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
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
            || !self.engines.is_empty()
            || !self.batch_sizes.is_empty()
            || !self.dims.0.is_empty()
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
        let mut dims = config.plan.dims.clone();
        dims.extend(self.dims.0.clone());
        for key in dims.keys() {
            if let Some(d) = dimension::by_key(key) {
                only_for(d, &models)?;
            }
        }
        let batch_sizes = if !self.batch_sizes.is_empty() {
            Some(self.batch_sizes.clone())
        } else {
            config.plan.batch_sizes.clone()
        };
        for &b in batch_sizes.iter().flatten() {
            crate::limits::BATCH_SIZE.check_count(b)?;
        }
        let shapes = Shapes { batch_sizes, dims };
        let devices = pick(&self.devices, &config.plan.devices, DEFAULT_DEVICES);
        if CUDA_BUILT {
            check_cuda_devices(&devices, || {
                crate::meter::nvml::gpu_count().map_err(|e| e.to_string())
            })?;
        }
        let engines = pick(&self.engines, &config.plan.engines, &["slimbench"]);
        Plan::new(
            &models,
            &pick(
                &self.techniques,
                &config.plan.techniques,
                catalog::DEFAULT_TECHNIQUES,
            ),
            &devices,
            &shapes,
        )?
        .on_engines(&engines)
    }
}
