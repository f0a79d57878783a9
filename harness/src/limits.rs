//! The documented range of every numeric setting of a run, checked before a run folder exists, with
//! the flag and the config key named in the error.

use std::path::Path;

use crate::error::UsageError;

/// One numeric setting: its flag, its config key, its unit and its accepted range (inclusive).
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// The command-line flag, e.g. `--sample-hz`.
    pub flag: &'static str,
    /// The config file key, e.g. `sample_hz`; `None` for a flag with no key.
    pub key: Option<&'static str>,
    /// What the number counts, for the message, e.g. `Hz`.
    pub unit: &'static str,
    /// Smallest accepted value.
    pub min: f64,
    /// Largest accepted value.
    pub max: f64,
    /// Whether the smallest value itself is refused (a range open at its low end).
    pub min_exclusive: bool,
}

/// Least timed window per cell, in seconds (up to an hour).
pub const MIN_DURATION_S: Limit = Limit {
    flag: "--min-duration",
    key: Some("min_duration_s"),
    unit: "s",
    min: 0.0,
    max: 3600.0,
    min_exclusive: false,
};

/// Power sampling rate (0 leaves it to the meter; above 1 kHz no meter here updates).
pub const SAMPLE_HZ: Limit = Limit {
    flag: "--sample-hz",
    key: Some("sample_hz"),
    unit: "Hz",
    min: 0.0,
    max: 1000.0,
    min_exclusive: false,
};

/// Seconds before a cell's worker is killed (up to a day).
pub const CELL_TIMEOUT_S: Limit = Limit {
    flag: "--cell-timeout",
    key: Some("cell_timeout_s"),
    unit: "s",
    min: 0.0,
    max: 86_400.0,
    min_exclusive: true,
};

/// Power usage effectiveness of the facility (1.0 = no overhead; the worst data centres stay
/// well under 3).
pub const PUE: Limit = Limit {
    flag: "--pue",
    key: Some("pue"),
    unit: "",
    min: 1.0,
    max: 5.0,
    min_exclusive: false,
};

/// Grid carbon intensity in g CO2e/kWh (the most carbon-intensive grids are near 1,100).
pub const CARBON_INTENSITY: Limit = Limit {
    flag: "--carbon-intensity",
    key: Some("carbon_intensity"),
    unit: "g/kWh",
    min: 0.0,
    max: 2000.0,
    min_exclusive: false,
};

/// Untimed warm-up iterations per cell.
pub const WARMUP: Limit = Limit {
    flag: "--warmup",
    key: Some("warmup"),
    unit: "iterations",
    min: 0.0,
    max: 1_000_000.0,
    min_exclusive: false,
};

/// Least timed iterations per cell.
pub const MIN_ITERS: Limit = Limit {
    flag: "--min-iters",
    key: Some("min_iters"),
    unit: "iterations",
    min: 1.0,
    max: 1_000_000.0,
    min_exclusive: false,
};

/// Items (or texts) per batch.
pub const BATCH_SIZE: Limit = Limit {
    flag: "--batch-sizes",
    key: Some("batch_sizes"),
    unit: "items",
    min: 1.0,
    max: 65_536.0,
    min_exclusive: false,
};

/// The range of a plan dimension beyond the batch size, as its definition gives it
/// ([`slimbench_models::dimension`]), named by its flag and config key.
pub fn of_dimension(dimension: &slimbench_models::dimension::Dimension) -> Limit {
    Limit {
        flag: dimension.flag,
        key: Some(dimension.config_key),
        unit: dimension.label,
        min: dimension.min as f64,
        max: dimension.max as f64,
        min_exclusive: false,
    }
}

/// Rounds of every cell (each in a fresh worker, interleaved with the other cells).
pub const ROUNDS: Limit = Limit {
    flag: "--rounds",
    key: Some("rounds"),
    unit: "rounds",
    min: 1.0,
    max: 50.0,
    min_exclusive: false,
};

/// Times a disturbed round is measured again.
pub const DISTURBED_RETRIES: Limit = Limit {
    flag: "--disturbed-retries",
    key: Some("disturbed_retries"),
    unit: "retries",
    min: 0.0,
    max: 10.0,
    min_exclusive: false,
};

/// Watts per vCPU of the estimate, each of `--cpu-power MIN:MAX` (published per-vCPU figures
/// are 0.4 to 9 W; a whole 128-core socket stays under 1 kW).
pub const CPU_POWER_W: Limit = Limit {
    flag: "--cpu-power",
    key: Some("cpu_power"),
    unit: "W per vCPU",
    min: 0.0,
    max: 1000.0,
    min_exclusive: false,
};

/// Embodied emissions of the host for the SCI's M (a rack server is near 1,000-3,000 kg CO2e).
pub const EMBODIED_KG: Limit = Limit {
    flag: "--embodied-kg",
    key: Some("embodied_kg"),
    unit: "kg CO2e",
    min: 0.0,
    max: 1_000_000.0,
    min_exclusive: false,
};

/// The host's expected life for the SCI's M.
pub const LIFETIME_YEARS: Limit = Limit {
    flag: "--lifetime-years",
    key: Some("lifetime_years"),
    unit: "years",
    min: 0.0,
    max: 50.0,
    min_exclusive: true,
};

/// The quality budget: how many points of the baseline's quality a variant may lose and still be
/// recommended.
pub const MAX_QUALITY_DROP: Limit = Limit {
    flag: "--max-quality-drop",
    key: Some("max_quality_drop_points"),
    unit: "points",
    min: 0.0,
    max: 100.0,
    min_exclusive: false,
};

/// Threads each cell's model uses.
pub const THREADS: Limit = Limit {
    flag: "--threads",
    key: Some("threads"),
    unit: "threads",
    min: 1.0,
    max: 4096.0,
    min_exclusive: false,
};

/// `MIN:MAX` watts per vCPU (`--cpu-power`, config key `cpu_power`): both in [`CPU_POWER_W`]'s
/// range, MIN at most MAX.
pub fn parse_cpu_power(text: &str) -> Result<crate::meter::microarch::VcpuPower, UsageError> {
    let bad = |why: &str| {
        UsageError(format!(
            "{} {text:?}: {why}; give MIN:MAX watts per vCPU at 0% and 100% utilisation, e.g. 0.81:4.48",
            CPU_POWER_W.name()
        ))
    };
    let (min, max) = text
        .split_once(':')
        .ok_or_else(|| bad("expected two numbers joined by ':'"))?;
    let number = |v: &str| {
        v.trim()
            .parse::<f64>()
            .map_err(|_| bad(&format!("{v:?} is not a number")))
    };
    let (min_w, max_w) = (
        CPU_POWER_W.check(number(min)?)?,
        CPU_POWER_W.check(number(max)?)?,
    );
    if min_w > max_w {
        return Err(bad("MIN is above MAX"));
    }
    Ok(crate::meter::microarch::VcpuPower { min_w, max_w })
}

/// A number as a message shows it: plain where short, in exponent form where huge or tiny (a
/// hostile `1e308` is not printed as 309 digits).
pub fn show_number(v: f64) -> String {
    if v != 0.0 && v.is_finite() && !(1e-6..1e9).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

impl Limit {
    /// The flag and the config key, e.g. `--sample-hz (config key sample_hz)`.
    pub fn name(&self) -> String {
        match self.key {
            Some(key) => format!("{} (config key `{key}`)", self.flag),
            None => self.flag.to_string(),
        }
    }

    /// True when `value` is finite and inside the range.
    pub fn accepts(&self, value: f64) -> bool {
        let low_ok = if self.min_exclusive {
            value > self.min
        } else {
            value >= self.min
        };
        value.is_finite() && low_ok && value <= self.max
    }

    /// What a value must be, e.g. `give a finite number from 1 to 5`.
    fn expected(&self) -> String {
        let low = if self.min_exclusive {
            format!("more than {}", self.min)
        } else {
            format!("from {}", self.min)
        };
        format!("give a finite number {low} to {} {}", self.max, self.unit)
            .trim_end()
            .to_string()
    }

    /// `value` when it is finite and inside the range, else a usage error naming the flag and the
    /// config key and giving the range.
    pub fn check(&self, value: f64) -> Result<f64, UsageError> {
        if self.accepts(value) {
            return Ok(value);
        }
        Err(UsageError(format!(
            "{} = {}: {}",
            self.name(),
            show_number(value),
            self.expected()
        )))
    }

    /// The same range check for a value stored in a file (`run.json`): the error names the file
    /// and the key as stored there, and the flag a new run would set it with.
    pub fn check_stored(&self, value: f64, file: &Path, key: &str) -> Result<f64, UsageError> {
        if self.accepts(value) {
            return Ok(value);
        }
        Err(UsageError(format!(
            "{}: key `{key}` = {}: {} (the range of {}); correct the file, or start a new run",
            file.display(),
            show_number(value),
            self.expected(),
            self.flag
        )))
    }

    /// [`Limit::check`] for a setting that may be absent.
    pub fn check_optional(&self, value: Option<f64>) -> Result<Option<f64>, UsageError> {
        value.map(|v| self.check(v)).transpose()
    }

    /// [`Limit::check`] for a count.
    pub fn check_count(&self, value: usize) -> Result<usize, UsageError> {
        self.check(value as f64).map(|_| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infinite_nan_and_out_of_range_values_are_refused_naming_flag_and_key() {
        for bad in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e300, -1.0] {
            let e = CELL_TIMEOUT_S.check(bad).unwrap_err().to_string();
            assert!(
                e.contains("--cell-timeout") && e.contains("cell_timeout_s"),
                "{e}"
            );
        }
        assert!(
            CELL_TIMEOUT_S.check(0.0).is_err(),
            "a timeout of 0 is refused"
        );
        assert_eq!(CELL_TIMEOUT_S.check(600.0).unwrap(), 600.0);
        assert!(SAMPLE_HZ.check(1e9).is_err());
        assert!(PUE.check(f64::INFINITY).is_err());
        assert!(PUE.check(0.9).is_err());
        assert!(CARBON_INTENSITY.check(f64::INFINITY).is_err());
        assert!(MIN_DURATION_S.check(f64::INFINITY).is_err());
        assert!(BATCH_SIZE.check_count(100_000_000).is_err());
        assert_eq!(BATCH_SIZE.check_count(32).unwrap(), 32);
    }
}
