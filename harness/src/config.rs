//! `bench.toml`: a run described in a file. Every key is optional; flags override it. Unknown keys
//! and wrong types are errors that name the key and its line (the toml crate's spans).
//!
//! ```toml
//! models = ["digits-mlp"]
//! techniques = ["fp32", "q8_0", "q4_0"]
//! devices = ["cpu"]
//! batch_sizes = [1, 32]
//! warmup = 10
//! min_iters = 50
//! min_duration_s = 2.0
//! energy = "auto"          # auto | rapl | nvml | estimate
//! sample_hz = 10.0
//! cell_timeout_s = 600.0
//! out = "reports"
//! region = "POL"           # ISO3, country name, or gcp:<region>
//! carbon_intensity = 300.0 # g CO2e/kWh, overrides the region
//! pue = 1.2
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::meter::choose::EnergyChoice;
use crate::plan::UsageError;

/// The contents of a run config file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Models.
    pub models: Option<Vec<String>>,
    /// Techniques.
    pub techniques: Option<Vec<String>>,
    /// Devices.
    pub devices: Option<Vec<String>>,
    /// Batch sizes.
    pub batch_sizes: Option<Vec<usize>>,
    /// Sequence lengths (only for models that take text).
    pub sequence_lengths: Option<Vec<usize>>,
    /// Untimed warm-up iterations per cell.
    pub warmup: Option<usize>,
    /// Least timed iterations per cell.
    pub min_iters: Option<usize>,
    /// Least timed window per cell, seconds.
    pub min_duration_s: Option<f64>,
    /// Short windows.
    pub quick: Option<bool>,
    /// Energy source.
    pub energy: Option<EnergyChoice>,
    /// Powercap root for RAPL.
    pub powercap_root: Option<PathBuf>,
    /// Power sampling rate, Hz.
    pub sample_hz: Option<f64>,
    /// Per-cell timeout, seconds.
    pub cell_timeout_s: Option<f64>,
    /// Prepared-weights cache folder.
    pub cache_dir: Option<PathBuf>,
    /// Output folder under which the run folder is created.
    pub out: Option<PathBuf>,
    /// Grid region: ISO3 code, country name, or `gcp:<region>`.
    pub region: Option<String>,
    /// Grid intensity, g CO2e per kWh (overrides the region's).
    pub carbon_intensity: Option<f64>,
    /// Power usage effectiveness of the facility.
    pub pue: Option<f64>,
}

/// Reads and checks a config file; errors name the file, and the key and line where they can.
pub fn load_config(path: &Path) -> Result<RunConfig, UsageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read config {}: {e}", path.display())))?;
    parse_config(&text, &path.display().to_string())
}

/// Parses config text; `origin` names it in errors.
pub fn parse_config(text: &str, origin: &str) -> Result<RunConfig, UsageError> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let message = e.message().to_string();
        match line {
            Some(line) => UsageError(format!("{origin}: line {line}: {message}")),
            None => UsageError(format!("{origin}: {message}")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_key_is_named_with_its_line() {
        let text = "models = [\"digits-mlp\"]\n\ntechnique = [\"fp32\"]\n";
        let e = parse_config(text, "bench.toml").unwrap_err().0;
        assert!(e.starts_with("bench.toml: line 3:"), "{e}");
        assert!(e.contains("unknown field `technique`"), "{e}");
    }

    #[test]
    fn a_wrong_type_is_named_with_its_line() {
        let e = parse_config("warmup = \"ten\"\n", "b.toml").unwrap_err().0;
        assert!(e.contains("line 1") && e.contains("invalid type"), "{e}");
    }

    #[test]
    fn a_full_config_parses() {
        let c = parse_config(
            "models = [\"digits-mlp\"]\nbatch_sizes = [1, 32]\nenergy = \"estimate\"\nmin_duration_s = 0.5\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.batch_sizes, Some(vec![1, 32]));
        assert_eq!(c.energy, Some(EnergyChoice::Estimate));
    }
}
