//! `slimbench run`: builds the plan from flags, runs it, writes the report, prints the table.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use slimbench_models::cache::default_cache_dir;
use slimbench_models::catalog;

use super::split_list;
use crate::export::table;
use crate::host::HostInfo;
use crate::meter::choose::{open_meter, EnergyChoice, MeterSettings};
use crate::meter::rapl::powercap_root;
use crate::plan::{Plan, UsageError};
use crate::runner::parent::{new_run_id, run_dir_for};
use crate::runner::{run_plan, RunSettings, TimingSettings};

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Models to measure, comma-separated (see `slimbench list`). Default: the default suite.
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Techniques to apply, comma-separated; `fp32` is the uncompressed baseline. Default: fp32,q8_0,q4_0.
    #[arg(long, value_delimiter = ',')]
    pub techniques: Vec<String>,
    /// Devices, comma-separated. Default: cpu.
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<String>,
    /// Batch sizes, comma-separated. Default: 1,32.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub batch_sizes: Vec<usize>,
    /// Folder under which the run's folder (named by its run id) is created.
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// Short windows for a fast look (20 iterations and 1 s per cell at least, instead of 50 and 2 s).
    #[arg(long)]
    pub quick: bool,
    /// Untimed warm-up iterations per cell (default 10; 3 with --quick).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Least number of timed iterations per cell (default 50; 20 with --quick).
    #[arg(long)]
    pub min_iters: Option<usize>,
    /// Least length of the timed window per cell, in seconds (default 2; 1 with --quick).
    #[arg(long)]
    pub min_duration: Option<f64>,
    /// Energy source: auto uses every measured source available and falls back to the estimate with a
    /// warning; rapl or nvml fail when unreadable; estimate uses CPU time x TDP.
    #[arg(long, value_enum, default_value = "auto")]
    pub energy: EnergyChoice,
    /// Powercap sysfs root for RAPL (default /sys/class/powercap, or $SLIMBENCH_POWERCAP_ROOT).
    #[arg(long)]
    pub powercap_root: Option<PathBuf>,
    /// Power sampling rate in Hz during a cell (raised to what the meter needs; 0: window edges only).
    #[arg(long, default_value_t = 10.0)]
    pub sample_hz: f64,
    /// Folder of prepared (trained) weights (default $SLIMBENCH_CACHE or ~/.cache/slimbench).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Seconds a cell may take before its worker is killed and the cell recorded as failed.
    #[arg(long, default_value_t = 600.0)]
    pub cell_timeout: f64,
}

fn or_default(given: &[String], default: &[&str]) -> Vec<String> {
    let list = split_list(given);
    if list.is_empty() {
        default.iter().map(|s| s.to_string()).collect()
    } else {
        list
    }
}

/// Runs the plan the flags describe.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::new(
        &or_default(&args.models, catalog::DEFAULT_MODELS),
        &or_default(&args.techniques, catalog::DEFAULT_TECHNIQUES),
        &or_default(&args.devices, &["cpu"]),
        &args.batch_sizes,
    )?;
    let mut timing = if args.quick {
        TimingSettings::quick()
    } else {
        TimingSettings::full()
    };
    timing.warmup_iters = args.warmup.unwrap_or(timing.warmup_iters);
    timing.min_iters = args.min_iters.unwrap_or(timing.min_iters).max(1);
    timing.min_duration_s = args.min_duration.unwrap_or(timing.min_duration_s);
    if !(timing.min_duration_s >= 0.0 && args.sample_hz >= 0.0 && args.cell_timeout > 0.0) {
        return Err(UsageError(
            "--min-duration and --sample-hz must be 0 or more, --cell-timeout more than 0".into(),
        )
        .into());
    }
    timing.sample_hz = args.sample_hz;

    let host = HostInfo::detect();
    let meter = MeterSettings {
        choice: args.energy,
        powercap_root: powercap_root(args.powercap_root.as_deref()),
        cpu_model: host.cpu_model.clone(),
        logical_cores: host.logical_cores,
        gpus: None,
    };
    // Probe the meter once here: an unreadable explicit source is a usage error (exit 2), and the
    // fallback warning of `auto` is shown once, not per cell.
    match open_meter(&meter) {
        Ok(opened) => {
            for w in &opened.warnings {
                eprintln!("warning: {w}");
            }
        }
        Err(e) => {
            return Err(UsageError(format!(
                "--energy {}: {e}",
                serde_json::to_value(args.energy)?.as_str().unwrap_or("?")
            ))
            .into())
        }
    }

    let run_id = new_run_id();
    let settings = RunSettings {
        run_dir: run_dir_for(&args.out, &run_id),
        run_id,
        cache_dir: args.cache_dir.unwrap_or_else(default_cache_dir),
        timing,
        meter,
        cell_timeout: Duration::from_secs_f64(args.cell_timeout),
        host,
    };
    eprintln!(
        "run {}: {} cells -> {}",
        settings.run_id,
        plan.cells.len(),
        settings.run_dir.display()
    );
    let outcome = run_plan(&plan, &settings)?;
    print!("{}", table::render(&outcome.records));
    if let Some(e) = outcome.records.iter().find_map(|r| r.energy.as_ref()) {
        if !e.measured {
            println!(
                "energy: ESTIMATED ({}), not measured: {}",
                e.source, e.method
            );
        } else {
            println!("energy: measured ({}): {}", e.source, e.method);
        }
    }
    println!("report: {}", outcome.run_dir.display());
    Ok(if outcome.any_failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
