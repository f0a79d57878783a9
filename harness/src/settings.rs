//! Every setting of a run defined once: its field (whose name gives the flag), its config key, its
//! help with its default, and its range. [`SettingValues`] is read from the flags (clap) and from
//! the config file (serde) alike, a config file being only more flags; [`SettingValues::over`]
//! lays the flags over the file, [`SettingValues::check`] tests every range in one place, and
//! [`SettingValues::resolve`] turns them into the [`RunSpec`] a run stores and its workers read.

use std::path::PathBuf;

use slimbench_models::cache::default_cache_dir;

use crate::carbon;
use crate::error::UsageError;
use crate::host::HostInfo;
use crate::limits::{self, Limit};
use crate::meter::choose::EnergyChoice;
use crate::meter::rapl::powercap_root;
use crate::runner::manifest::RunSpec;
use crate::runner::TimingSettings;
use slimbench_models::workload::ModelInputs;

/// Folder under which run folders are created when the setting `out` is not given.
pub const DEFAULT_OUT: &str = "reports";

/// Seconds a cell may take when the setting `cell_timeout` is not given.
pub const DEFAULT_CELL_TIMEOUT_S: f64 = 600.0;

/// `[default: X; Y with --quick]` for a timing setting, from the two sets of defaults.
fn timing_default<T: std::fmt::Display>(value: fn(&TimingSettings) -> T) -> String {
    format!(
        "[default: {}; {} with --quick]",
        value(&TimingSettings::full()),
        value(&TimingSettings::quick())
    )
}

/// A value with a documented range.
trait InRange {
    fn check_in(&self, limit: &Limit) -> Result<(), UsageError>;
}

impl InRange for usize {
    fn check_in(&self, limit: &Limit) -> Result<(), UsageError> {
        limit.check_count(*self).map(|_| ())
    }
}

impl InRange for f64 {
    fn check_in(&self, limit: &Limit) -> Result<(), UsageError> {
        limit.check(*self).map(|_| ())
    }
}

/// Defines [`SettingValues`] from one list: each entry's doc and clap attributes, its field and
/// type, its config key, and the [`Limit`] of its range where it has one.
macro_rules! run_settings {
    ($(
        $(#[$attr:meta])*
        $field:ident: $ty:ty, key $key:literal $(, range $limit:path)?;
    )*) => {
        /// Every run setting, `None` where not given: the flags of `slimbench run` and the keys of
        /// its config file, one field each.
        #[derive(Debug, Clone, Default, PartialEq, clap::Args, serde::Deserialize)]
        pub struct SettingValues {
            $(
                $(#[$attr])*
                #[serde(rename = $key, default)]
                pub $field: Option<$ty>,
            )*
        }

        impl SettingValues {
            /// The config key of every setting, in order.
            pub const KEYS: &'static [&'static str] = &[$($key),*];

            /// Each setting as given in `self` (the flags), else as given in `file`.
            pub fn over(self, file: SettingValues) -> SettingValues {
                SettingValues {
                    $($field: self.$field.or(file.$field),)*
                }
            }

            /// Every given value inside its documented range, else a usage error naming its flag
            /// and its config key and giving the range.
            pub fn check(&self) -> Result<(), UsageError> {
                $($(
                    if let Some(v) = &self.$field {
                        InRange::check_in(v, &$limit)?;
                    }
                )?)*
                Ok(())
            }

            /// The config key and the limit of each setting that has a range (for the test that
            /// checks them against the flags).
            #[cfg(test)]
            fn ranges() -> Vec<(&'static str, &'static Limit)> {
                vec![$($(($key, &$limit),)?)*]
            }
        }
    };
}

run_settings! {
    /// Short windows for a fast look.
    #[arg(long, num_args = 0, default_missing_value = "true", help = {
        let (q, f) = (TimingSettings::quick(), TimingSettings::full());
        format!(
            "Short windows for a fast look ({} warm-up, {} iterations and {} s per cell at least, instead of {}, {} and {} s)",
            q.warmup_iters, q.min_iters, q.min_duration_s, f.warmup_iters, f.min_iters, f.min_duration_s
        )
    })]
    quick: bool, key "quick";
    /// Untimed warm-up iterations per cell.
    #[arg(long, help = format!(
        "Untimed warm-up iterations per cell {}",
        timing_default(|t| t.warmup_iters)
    ))]
    warmup: usize, key "warmup", range limits::WARMUP;
    /// Least number of timed iterations per cell.
    #[arg(long, help = format!(
        "Least number of timed iterations per cell {}",
        timing_default(|t| t.min_iters)
    ))]
    min_iters: usize, key "min_iters", range limits::MIN_ITERS;
    /// Rounds per cell: each cell is measured this many times, each in a fresh worker, the cells
    /// interleaved in a new random order every round; the timed budget is split over them.
    #[arg(long, help = format!(
        "Rounds per cell: each in a fresh worker, the cells in a new seeded random order each round, the timed budget split over them; intervals and speed-ups come from the rounds {}",
        timing_default(|t| t.rounds)
    ))]
    rounds: usize, key "rounds", range limits::ROUNDS;
    /// Times a round disturbed by other processes or steal is measured again.
    #[arg(long, help = format!(
        "Times a round disturbed by other processes (over {:.0}% of the CPUs) or steal (over {:.0}%) is measured again before its last measurement is kept [default: {}]",
        100.0 * crate::interference::OTHER_CPU_LIMIT,
        100.0 * crate::interference::STEAL_LIMIT,
        crate::interference::DEFAULT_RETRIES
    ))]
    disturbed_retries: usize, key "disturbed_retries", range limits::DISTURBED_RETRIES;
    /// Least length of the timed window per cell, in seconds.
    #[arg(long, help = format!(
        "Least length of the timed window per cell, in seconds {}. The energy window is never under 1 s nor under 100 updates of the meter.",
        timing_default(|t| t.min_duration_s)
    ))]
    min_duration: f64, key "min_duration_s", range limits::MIN_DURATION_S;
    /// Energy source: auto uses every measured source available and falls back to the estimate with
    /// a warning; rapl or nvml fail (exit 2) when unreadable; estimate uses CPU time x TDP [default: auto].
    #[arg(long, value_enum)]
    energy: EnergyChoice, key "energy";
    /// Powercap sysfs root for RAPL [default: /sys/class/powercap, or $SLIMBENCH_POWERCAP_ROOT].
    #[arg(long)]
    powercap_root: PathBuf, key "powercap_root";
    /// Power sampling rate in Hz during a cell.
    #[arg(long, help = format!(
        "Power sampling rate in Hz during a cell, raised to what the meter needs [default: {}]",
        TimingSettings::full().sample_hz
    ))]
    sample_hz: f64, key "sample_hz", range limits::SAMPLE_HZ;
    /// Folder of prepared (trained) weights [default: $SLIMBENCH_CACHE or ~/.cache/slimbench].
    #[arg(long)]
    cache_dir: PathBuf, key "cache_dir";
    /// Seconds a cell may take before its worker is killed and the cell recorded failed.
    #[arg(long, help = format!(
        "Seconds a cell may take before its worker is killed and the cell recorded failed [default: {DEFAULT_CELL_TIMEOUT_S}]"
    ))]
    cell_timeout: f64, key "cell_timeout_s", range limits::CELL_TIMEOUT_S;
    /// Folder under which the run's folder (named by its run id) is created.
    #[arg(long, help = format!(
        "Folder under which the run's folder (named by its run id) is created [default: {DEFAULT_OUT}]"
    ))]
    out: PathBuf, key "out";
    /// Grid region for CO2e: an ISO3 code (POL), a country name (Poland), or `gcp:<region>`.
    #[arg(long, help = format!(
        "Grid region for CO2e: an ISO3 code (POL), a country name (Poland), or gcp:<region> [default: the world average, {} g/kWh (Ember, 2023)]",
        carbon::WORLD_AVERAGE_G_PER_KWH
    ))]
    region: String, key "region";
    /// Grid carbon intensity in g CO2e per kWh; overrides --region.
    #[arg(long, value_name = "G_PER_KWH")]
    carbon_intensity: f64, key "carbon_intensity", range limits::CARBON_INTENSITY;
    /// Power usage effectiveness of the facility (1.0 = no cooling or power overhead).
    #[arg(long, help = format!(
        "Power usage effectiveness of the facility (1.0 = no cooling or power overhead) [default: {:.1}]",
        carbon::DEFAULT_PUE
    ))]
    pue: f64, key "pue", range limits::PUE;
    /// Watts per vCPU at 0% and 100% utilisation for the estimated energy, MIN:MAX, instead of
    /// Cloud Carbon Footprint's figures for this CPU's microarchitecture (labelled estimated-vcpu);
    /// both in the range of `limits::CPU_POWER_W`, checked when parsed.
    #[arg(long, value_name = "MIN:MAX")]
    cpu_power: String, key "cpu_power";
    /// The host's embodied emissions, kg CO2e, for the SCI's M [default: Cloud Carbon Footprint's
    /// 1,000 kg server plus its memory above 16 GB].
    #[arg(long, value_name = "KG")]
    embodied_kg: f64, key "embodied_kg", range limits::EMBODIED_KG;
    /// Points of the baseline's quality a recommended variant may lose [default: 1].
    #[arg(long, value_name = "POINTS")]
    max_quality_drop: f64, key "max_quality_drop_points", range limits::MAX_QUALITY_DROP;
    /// The host's expected life in years, for the SCI's M [default: 4].
    #[arg(long, value_name = "YEARS")]
    lifetime_years: f64, key "lifetime_years", range limits::LIFETIME_YEARS;
    /// Threads each cell's model uses [default: $RAYON_NUM_THREADS, else the physical cores].
    #[arg(long)]
    threads: usize, key "threads", range limits::THREADS;
    /// A user's ONNX model (onnx@PATH) fed these arrays: a .npz with one array a graph input,
    /// named as the input [default: generated from the graph's declared inputs].
    #[arg(long, value_name = "FILE.npz")]
    inputs: PathBuf, key "inputs";
    /// The sizes of a user's ONNX model's named input dimensions, for generated inputs:
    /// name=value, comma-separated (sequence=128); the first dimension is the batch size.
    #[arg(long, value_name = "NAME=N,...")]
    dims: String, key "dims";
    /// Class labels of a user's ONNX model's input items (.npy of int64, or one integer a line):
    /// quality is then accuracy too.
    #[arg(long, value_name = "FILE")]
    labels: PathBuf, key "labels";
}

/// `path` made absolute (the workers run elsewhere), or a usage error naming `flag`.
fn existing_file(path: &std::path::Path, flag: &str) -> Result<PathBuf, UsageError> {
    path.canonicalize()
        .ok()
        .filter(|p| p.is_file())
        .ok_or_else(|| UsageError(format!("{flag} {}: no such file", path.display())))
}

impl SettingValues {
    /// The run's settings and the folder under which its folder is to be made: each range
    /// checked, every absent setting given its default (the timing's from `--quick` or a full
    /// run, the threads from `RAYON_NUM_THREADS` or the host's physical cores).
    pub fn resolve(&self, host: &HostInfo) -> Result<(RunSpec, PathBuf), UsageError> {
        self.check()?;
        let mut timing = if self.quick.unwrap_or(false) {
            TimingSettings::quick()
        } else {
            TimingSettings::full()
        };
        timing.warmup_iters = self.warmup.unwrap_or(timing.warmup_iters);
        timing.min_iters = self.min_iters.unwrap_or(timing.min_iters);
        timing.min_duration_s = self.min_duration.unwrap_or(timing.min_duration_s);
        timing.sample_hz = self.sample_hz.unwrap_or(timing.sample_hz);
        timing.rounds = self.rounds.unwrap_or(timing.rounds);
        timing.disturbed_retries = self.disturbed_retries.unwrap_or(timing.disturbed_retries);
        let spec = RunSpec {
            threads: Some(resolve_threads(self.threads, host)),
            order_seed: rand::random(),
            cpu_power: self
                .cpu_power
                .as_deref()
                .map(limits::parse_cpu_power)
                .transpose()?,
            embodied_kg: self.embodied_kg,
            lifetime_years: self.lifetime_years,
            max_quality_drop_points: self.max_quality_drop,
            model_inputs: ModelInputs {
                inputs: self
                    .inputs
                    .as_deref()
                    .map(|p| existing_file(p, "--inputs"))
                    .transpose()?,
                dims: match self.dims.as_deref() {
                    Some(text) => {
                        ModelInputs::parse_dims(text).map_err(|e| UsageError(e.to_string()))?
                    }
                    None => Default::default(),
                },
                labels: self
                    .labels
                    .as_deref()
                    .map(|p| existing_file(p, "--labels"))
                    .transpose()?,
            },
            timing,
            energy: self.energy.unwrap_or(EnergyChoice::Auto),
            powercap_root: powercap_root(self.powercap_root.as_deref()),
            cache_dir: self.cache_dir.clone().unwrap_or_else(default_cache_dir),
            cell_timeout_s: self.cell_timeout.unwrap_or(DEFAULT_CELL_TIMEOUT_S),
            carbon: carbon::resolve(self.region.as_deref(), self.carbon_intensity, self.pue)?,
        };
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OUT));
        Ok((spec, out))
    }
}

/// The threads of each cell: the setting, else `RAYON_NUM_THREADS`, else the physical cores (the
/// logical ones where unknown).
fn resolve_threads(setting: Option<usize>, host: &HostInfo) -> usize {
    let from_env = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0);
    setting
        .or(from_env)
        .or(host.physical_cores)
        .unwrap_or(host.logical_cores)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        settings: SettingValues,
    }

    #[test]
    fn each_range_names_the_flag_and_key_the_setting_is_defined_with() {
        let command = Flags::command();
        for (key, limit) in SettingValues::ranges() {
            assert_eq!(limit.key, Some(key), "{}", limit.flag);
            let flag = limit.flag.trim_start_matches("--");
            assert!(
                command.get_arguments().any(|a| a.get_long() == Some(flag)),
                "{key}: no flag {}",
                limit.flag
            );
        }
        // Every setting is a flag and a key.
        assert_eq!(command.get_arguments().count(), SettingValues::KEYS.len());
    }

    #[test]
    fn a_flag_overrides_the_file_and_a_config_file_is_only_more_flags() {
        use clap::Parser;
        let flags = Flags::parse_from(["x", "--rounds", "5", "--quick", "--min-duration", "0.5"]);
        let file: SettingValues =
            toml::from_str("rounds = 2\nwarmup = 7\nmin_duration_s = 3.0\nthreads = 1\n").unwrap();
        let merged = flags.settings.over(file);
        assert_eq!(merged.rounds, Some(5));
        assert_eq!(merged.warmup, Some(7));
        assert_eq!(merged.min_duration, Some(0.5));
        assert_eq!(merged.quick, Some(true));
        let host = HostInfo::detect();
        let (spec, out) = merged.resolve(&host).unwrap();
        assert_eq!(spec.timing.rounds, 5);
        assert_eq!(spec.timing.warmup_iters, 7);
        assert_eq!(spec.timing.min_iters, TimingSettings::quick().min_iters);
        assert_eq!(spec.threads, Some(1));
        assert_eq!(out, PathBuf::from(DEFAULT_OUT));
    }

    #[test]
    fn out_of_range_values_from_either_source_are_refused_in_one_place() {
        let file: SettingValues = toml::from_str("cell_timeout_s = 0.0\n").unwrap();
        let e = file.check().unwrap_err().to_string();
        assert!(
            e.contains("--cell-timeout") && e.contains("cell_timeout_s"),
            "{e}"
        );
        let flags = SettingValues {
            rounds: Some(0),
            ..SettingValues::default()
        };
        let e = flags.resolve(&HostInfo::detect()).unwrap_err().to_string();
        assert!(e.contains("--rounds"), "{e}");
    }

    fn host(physical: Option<usize>) -> HostInfo {
        HostInfo {
            cpu_model: "test".into(),
            logical_cores: 8,
            physical_cores: physical,
            os: "test".into(),
            total_memory_bytes: 0,
        }
    }

    #[test]
    fn threads_come_from_the_setting_else_the_physical_cores() {
        assert_eq!(resolve_threads(Some(3), &host(Some(4))), 3);
        if std::env::var("RAYON_NUM_THREADS").is_err() {
            assert_eq!(resolve_threads(None, &host(Some(4))), 4);
            assert_eq!(resolve_threads(None, &host(None)), 8);
        }
        let zero = SettingValues {
            threads: Some(0),
            ..SettingValues::default()
        };
        let err = zero.check().unwrap_err();
        assert!(err.0.contains("--threads"), "{}", err.0);
    }
}
