//! `bench.toml`: a run described in a file. Every key is optional; flags override it. Unknown keys
//! and wrong types are errors that name the key and its line (the toml crate's spans).
//!
//! ```toml
//! models = ["digits-mlp"]
//! techniques = ["fp32", "q8_0", "q4_0"]
//! devices = ["cpu"]
//! engines = ["slimbench", "ort"]  # ort: ONNX Runtime (after `slimbench fetch onnxruntime`)
//! batch_sizes = [1, 32]
//! warmup = 10
//! min_iters = 50
//! min_duration_s = 2.0
//! rounds = 3               # each cell in 3 rounds of fresh workers, interleaved
//! energy = "auto"          # auto | rapl | nvml | estimate
//! sample_hz = 10.0
//! cell_timeout_s = 600.0
//! out = "reports"
//! region = "POL"           # ISO3, country name, or gcp:<region>
//! carbon_intensity = 300.0 # g CO2e/kWh, overrides the region
//! pue = 1.2
//! cpu_power = "0.81:4.48"  # W per vCPU at 0% and 100% for the estimate (default: CCF's table)
//! embodied_kg = 1500.0     # the host's embodied kg CO2e, for the SCI's M
//! lifetime_years = 4.0
//! max_quality_drop_points = 1.0  # the recommendation's quality budget
//! threads = 2              # threads of each cell's model (default: the physical cores)
//! ```

use std::path::Path;

use std::collections::BTreeMap;

use serde::Deserialize;
use slimbench_models::dimension;

use crate::error::UsageError;
use crate::settings::SettingValues;

/// The plan's keys of a config file (the settings' are [`SettingValues`]').
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PlanConfig {
    /// Models.
    pub models: Option<Vec<String>>,
    /// Techniques.
    pub techniques: Option<Vec<String>>,
    /// Devices.
    pub devices: Option<Vec<String>>,
    /// Engines (`slimbench`, `ort`).
    pub engines: Option<Vec<String>>,
    /// Batch sizes.
    pub batch_sizes: Option<Vec<usize>>,
    /// The values of each plan dimension beyond the batch size given in the file, by the
    /// dimension's key, read under its config key (`sequence_lengths = [32, 128]`).
    #[serde(skip)]
    pub dims: BTreeMap<&'static str, Vec<usize>>,
}

impl PlanConfig {
    /// The plan's config keys but the dimensions' ([`PlanConfig::keys`] has them all).
    const FIXED_KEYS: &'static [&'static str] =
        &["models", "techniques", "devices", "engines", "batch_sizes"];

    /// The plan's config keys: the fixed ones, then each plan dimension's.
    pub fn keys() -> Vec<&'static str> {
        let dims = dimension::all().into_iter().map(|d| d.config_key);
        Self::FIXED_KEYS.iter().copied().chain(dims).collect()
    }
}

/// The contents of a run config file: the plan, and the settings (the same as the flags of
/// `slimbench run`, under their config keys).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunConfig {
    /// What to run.
    pub plan: PlanConfig,
    /// How to measure it.
    pub settings: SettingValues,
}

/// Reads and checks a config file; errors name the file, and the key and line where they can.
pub fn load_config(path: &Path) -> Result<RunConfig, UsageError> {
    let size = std::fs::metadata(path)
        .map_err(|e| UsageError(format!("cannot read config {}: {e}", path.display())))?
        .len();
    if size > MAX_CONFIG_BYTES {
        return Err(UsageError(format!(
            "config {}: {size} bytes; a run config is a few lines (at most {MAX_CONFIG_BYTES} bytes): is it the right file?",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read config {}: {e}", path.display())))?;
    parse_config(&text, &path.display().to_string())
}

/// The largest config file read (a plan of every model, technique and shape fits in a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Parses config text; `origin` names it in errors: a key that is neither the plan's nor a
/// setting's, or a value of the wrong type, is named with its line.
pub fn parse_config(text: &str, origin: &str) -> Result<RunConfig, UsageError> {
    let table: toml::Table = from_toml(text, origin)?;
    let known: Vec<&str> = PlanConfig::keys()
        .into_iter()
        .chain(SettingValues::KEYS.iter().copied())
        .collect();
    if let Some(key) = table.keys().find(|k| !known.contains(&k.as_str())) {
        let expected = known
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let message = format!("unknown field `{key}`, expected one of {expected}");
        return Err(match line_of_key(text, key) {
            Some(line) => UsageError(format!("{origin}: line {line}: {message}")),
            None => UsageError(format!("{origin}: {message}")),
        });
    }
    let mut plan: PlanConfig = from_toml(text, origin)?;
    for d in dimension::all() {
        let Some(value) = table.get(d.config_key) else {
            continue;
        };
        let values = Vec::<usize>::deserialize(value.clone()).map_err(|e| {
            let at = line_of_key(text, d.config_key)
                .map(|l| format!("line {l}: "))
                .unwrap_or_default();
            UsageError(format!(
                "{origin}: {at}key `{}`: {}; give a list of whole numbers, e.g. [{}, {}]",
                d.config_key,
                e.to_string().trim_end(),
                d.min,
                d.min.max(1) * 2
            ))
        })?;
        plan.dims.insert(d.key, values);
    }
    Ok(RunConfig {
        plan,
        settings: from_toml(text, origin)?,
    })
}

/// The line (1-based) where `key` is set at the top level of `text`, if it can be told.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            let rest = line
                .strip_prefix(key)
                .or_else(|| line.strip_prefix(&format!("\"{key}\"")))
                .or_else(|| line.strip_prefix('[').and_then(|l| l.strip_prefix(key)));
            rest.is_some_and(|r| {
                let r = r.trim_start();
                r.starts_with('=') || r.starts_with(']') || r.starts_with('.')
            })
        })
        .map(|i| i + 1)
}

/// `T` from config text, each error naming `origin`, and the line and key where it can.
fn from_toml<T: serde::de::DeserializeOwned>(text: &str, origin: &str) -> Result<T, UsageError> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| {
            let before = text.get(..s.start.min(text.len())).unwrap_or(text);
            before.matches('\n').count() + 1
        });
        let message = e.message().to_string();
        // The key of that line, so a wrong type names it as an unknown key does.
        let key = line
            .and_then(|l| text.lines().nth(l - 1))
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| k.trim().trim_matches('"').to_string())
            .filter(|k| !k.is_empty() && !message.contains(k.as_str()));
        match (line, key) {
            (Some(line), Some(key)) => {
                UsageError(format!("{origin}: line {line}: key `{key}`: {message}"))
            }
            (Some(line), None) => UsageError(format!("{origin}: line {line}: {message}")),
            _ => UsageError(format!("{origin}: {message}")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::choose::EnergyChoice;

    #[test]
    fn a_misspelt_key_is_named_with_its_line() {
        let text = "models = [\"digits-mlp\"]\n\ntechnique = [\"fp32\"]\n";
        let e = parse_config(text, "bench.toml").unwrap_err().0;
        assert!(e.starts_with("bench.toml: line 3:"), "{e}");
        assert!(e.contains("unknown field `technique`"), "{e}");
    }

    #[test]
    fn a_wrong_type_is_named_with_its_key_and_line() {
        let e = parse_config("warmup = \"ten\"\n", "b.toml").unwrap_err().0;
        assert!(e.contains("line 1") && e.contains("invalid type"), "{e}");
        assert!(e.contains("key `warmup`"), "{e}");
    }

    #[test]
    fn a_plan_dimension_is_read_under_its_config_key_and_a_wrong_value_named() {
        let c = parse_config("sequence_lengths = [32, 128]\ngen_tokens = [8]\n", "b.toml").unwrap();
        assert_eq!(c.plan.dims.get("seq_len"), Some(&vec![32, 128]));
        assert_eq!(c.plan.dims.get("gen_tokens"), Some(&vec![8]));
        let e = parse_config("warmup = 1\nsequence_lengths = [\"x\"]\n", "b.toml")
            .unwrap_err()
            .0;
        assert!(
            e.starts_with("b.toml: line 2: key `sequence_lengths`: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn an_oversized_config_is_refused_before_it_is_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        let body = format!("batch_sizes = [{}]\n", vec!["1"; 600_000].join(","));
        std::fs::write(&path, body).unwrap();
        let e = load_config(&path).unwrap_err().0;
        assert!(e.contains("big.toml") && e.contains("bytes"), "{e}");
    }

    proptest::proptest! {
        /// Any text, cut anywhere, gives a config or an error naming the file: never a panic.
        #[test]
        fn any_text_or_truncation_parses_or_errs_without_panic(
            text in "[a-z_=\\[\\]\"0-9., \n#\u{e9}\u{1F600}]{0,200}",
            cut in 0usize..200,
        ) {
            let full = format!("models = [\"digits-mlp\"]\nwarmup = 3\n{text}");
            let end = full.char_indices().map(|(i, _)| i).nth(cut).unwrap_or(full.len());
            if let Err(e) = parse_config(&full[..end], "p.toml") {
                proptest::prop_assert!(e.0.starts_with("p.toml"), "{}", e.0);
            }
        }
    }

    #[test]
    fn a_full_config_parses() {
        let c = parse_config(
            "models = [\"digits-mlp\"]\nbatch_sizes = [1, 32]\nenergy = \"estimate\"\nmin_duration_s = 0.5\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.plan.batch_sizes, Some(vec![1, 32]));
        assert_eq!(c.settings.energy, Some(EnergyChoice::Estimate));
        assert_eq!(c.settings.min_duration, Some(0.5));
    }
}
