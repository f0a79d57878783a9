//! `slimbench run`: resolves the plan and settings (flags over config file over defaults), or takes
//! them from a run folder with `--resume`; runs the missing cells; writes the report.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use slimbench_models::cache::default_cache_dir;

use super::plan_args::{load_optional_config, PlanArgs};
use crate::analysis::RunData;
use crate::carbon;
use crate::error::UsageError;
use crate::export::{export_all, table, ALL_EXPORTS};
use crate::host::HostInfo;
use crate::limits;
use crate::meter::choose::{open_meter, EnergyChoice, MeterSettings};
use crate::meter::rapl::powercap_root;
use crate::plan::Plan;
use crate::results::{set_aside_torn_tail, Record, Status, SCHEMA_VERSION};
use crate::runner::lock::RunLock;
use crate::runner::manifest::{shard_cells, Manifest, RunSpec, Shard};
use crate::runner::parent::{create_run_folder, prepare_variants};
use crate::runner::{run_cells, RunOptions, RunSettings, TimingSettings};

/// Folder under which run folders are created when neither `--out` nor `out` is given.
pub const DEFAULT_OUT: &str = "reports";

/// Seconds a cell may take when neither `--cell-timeout` nor `cell_timeout_s` is given.
pub const DEFAULT_CELL_TIMEOUT_S: f64 = 600.0;

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// What to run.
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Folder under which the run's folder (named by its run id) is created.
    #[arg(long, help = format!(
        "Folder under which the run's folder (named by its run id) is created [default: {DEFAULT_OUT}]"
    ))]
    pub out: Option<PathBuf>,
    /// Short windows for a fast look (see [`TimingSettings::quick`]).
    #[arg(long, help = {
        let (q, f) = (TimingSettings::quick(), TimingSettings::full());
        format!(
            "Short windows for a fast look ({} warm-up, {} iterations and {} s per cell at least, instead of {}, {} and {} s)",
            q.warmup_iters, q.min_iters, q.min_duration_s, f.warmup_iters, f.min_iters, f.min_duration_s
        )
    })]
    pub quick: bool,
    /// Untimed warm-up iterations per cell.
    #[arg(long, help = format!(
        "Untimed warm-up iterations per cell [default: {}; {} with --quick]",
        TimingSettings::full().warmup_iters,
        TimingSettings::quick().warmup_iters
    ))]
    pub warmup: Option<usize>,
    /// Least number of timed iterations per cell.
    #[arg(long, help = format!(
        "Least number of timed iterations per cell [default: {}; {} with --quick]",
        TimingSettings::full().min_iters,
        TimingSettings::quick().min_iters
    ))]
    pub min_iters: Option<usize>,
    /// Rounds per cell: each cell is measured this many times, each in a fresh worker, the cells
    /// interleaved in a new random order every round; the timed budget is split over them.
    #[arg(long, help = format!(
        "Rounds per cell: each in a fresh worker, the cells in a new seeded random order each round, the timed budget split over them; intervals and speed-ups come from the rounds [default: {}; {} with --quick]",
        TimingSettings::full().rounds,
        TimingSettings::quick().rounds
    ))]
    pub rounds: Option<usize>,
    /// Times a round disturbed by other processes or steal is measured again.
    #[arg(long, help = format!(
        "Times a round disturbed by other processes (over {:.0}% of the CPUs) or steal (over {:.0}%) is measured again before its last measurement is kept [default: {}]",
        100.0 * crate::interference::OTHER_CPU_LIMIT,
        100.0 * crate::interference::STEAL_LIMIT,
        crate::interference::DEFAULT_RETRIES
    ))]
    pub disturbed_retries: Option<usize>,
    /// Least length of the timed window per cell, in seconds.
    #[arg(long, help = format!(
        "Least length of the timed window per cell, in seconds [default: {}; {} with --quick]. The energy window is never under 1 s nor under 100 updates of the meter.",
        TimingSettings::full().min_duration_s,
        TimingSettings::quick().min_duration_s
    ))]
    pub min_duration: Option<f64>,
    /// Energy source: auto uses every measured source available and falls back to the estimate with
    /// a warning; rapl or nvml fail (exit 2) when unreadable; estimate uses CPU time x TDP [default: auto].
    #[arg(long, value_enum)]
    pub energy: Option<EnergyChoice>,
    /// Powercap sysfs root for RAPL [default: /sys/class/powercap, or $SLIMBENCH_POWERCAP_ROOT].
    #[arg(long)]
    pub powercap_root: Option<PathBuf>,
    /// Power sampling rate in Hz during a cell.
    #[arg(long, help = format!(
        "Power sampling rate in Hz during a cell, raised to what the meter needs [default: {}]",
        TimingSettings::full().sample_hz
    ))]
    pub sample_hz: Option<f64>,
    /// Folder of prepared (trained) weights [default: $SLIMBENCH_CACHE or ~/.cache/slimbench].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Seconds a cell may take before its worker is killed and the cell recorded failed.
    #[arg(long, help = format!(
        "Seconds a cell may take before its worker is killed and the cell recorded failed [default: {DEFAULT_CELL_TIMEOUT_S}]"
    ))]
    pub cell_timeout: Option<f64>,
    /// Run one share of the plan, i/N (every N-th cell starting at the i-th), for a fleet; join the
    /// shares' folders with `slimbench merge`.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Finish the run in DIR: run only its missing cells, with the plan and settings stored there.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// With --resume: run the cells recorded as failed again too; each new record supersedes the
    /// failed one, which stays in results.jsonl.
    #[arg(long, requires = "resume")]
    pub retry_failed: bool,
    /// Print each record as one JSON line on stdout as its cell ends (no table).
    #[arg(long)]
    pub json: bool,
    /// Grid region for CO2e: an ISO3 code (POL), a country name (Poland), or `gcp:<region>`.
    #[arg(long, help = format!(
        "Grid region for CO2e: an ISO3 code (POL), a country name (Poland), or gcp:<region> [default: the world average, {} g/kWh (Ember, 2023)]",
        carbon::WORLD_AVERAGE_G_PER_KWH
    ))]
    pub region: Option<String>,
    /// Grid carbon intensity in g CO2e per kWh; overrides --region.
    #[arg(long, value_name = "G_PER_KWH")]
    pub carbon_intensity: Option<f64>,
    /// Power usage effectiveness of the facility (1.0 = no cooling or power overhead).
    #[arg(long, help = format!(
        "Power usage effectiveness of the facility (1.0 = no cooling or power overhead) [default: {:.1}]",
        carbon::DEFAULT_PUE
    ))]
    pub pue: Option<f64>,
    /// Watts per vCPU at 0% and 100% utilisation for the estimated energy, MIN:MAX, instead of
    /// Cloud Carbon Footprint's figures for this CPU's microarchitecture (labelled estimated-vcpu).
    #[arg(long, value_name = "MIN:MAX")]
    pub cpu_power: Option<String>,
    /// The host's embodied emissions, kg CO2e, for the SCI's M [default: Cloud Carbon Footprint's
    /// 1,000 kg server plus its memory above 16 GB].
    #[arg(long, value_name = "KG")]
    pub embodied_kg: Option<f64>,
    /// Points of the baseline's quality a recommended variant may lose [default: 1].
    #[arg(long, value_name = "POINTS")]
    pub max_quality_drop: Option<f64>,
    /// The host's expected life in years, for the SCI's M [default: 4].
    #[arg(long, value_name = "YEARS")]
    pub lifetime_years: Option<f64>,
    /// Threads each cell's model uses [default: $RAYON_NUM_THREADS, else the physical cores].
    #[arg(long)]
    pub threads: Option<usize>,
}

/// The threads of each cell: the flag, else `RAYON_NUM_THREADS`, else the physical cores (the
/// logical ones where unknown).
fn resolve_threads(flag: Option<usize>, host: &HostInfo) -> Result<usize, UsageError> {
    if let Some(n) = flag {
        limits::THREADS.check_count(n)?;
    }
    let from_env = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0);
    Ok(flag
        .or(from_env)
        .or(host.physical_cores)
        .unwrap_or(host.logical_cores)
        .max(1))
}

/// The manifest of a new run (its id left empty until its folder exists) and the folder under
/// which the run's folder is to be created.
fn resolve_new_run(args: &RunArgs) -> Result<(Manifest, PathBuf), UsageError> {
    let config = load_optional_config(args.plan.config.as_deref())?;
    let plan: Plan = args.plan.resolve_plan(&config)?;
    let quick = args.quick || config.quick.unwrap_or(false);
    let mut timing = if quick {
        TimingSettings::quick()
    } else {
        TimingSettings::full()
    };
    timing.warmup_iters = args.warmup.or(config.warmup).unwrap_or(timing.warmup_iters);
    timing.min_iters = args
        .min_iters
        .or(config.min_iters)
        .unwrap_or(timing.min_iters)
        .max(1);
    timing.min_duration_s = args
        .min_duration
        .or(config.min_duration_s)
        .unwrap_or(timing.min_duration_s);
    timing.sample_hz = args
        .sample_hz
        .or(config.sample_hz)
        .unwrap_or(timing.sample_hz);
    let cell_timeout_s = args
        .cell_timeout
        .or(config.cell_timeout_s)
        .unwrap_or(DEFAULT_CELL_TIMEOUT_S);
    limits::MIN_DURATION_S.check(timing.min_duration_s)?;
    limits::SAMPLE_HZ.check(timing.sample_hz)?;
    limits::CELL_TIMEOUT_S.check(cell_timeout_s)?;
    limits::WARMUP.check_count(timing.warmup_iters)?;
    limits::MIN_ITERS.check_count(timing.min_iters)?;
    timing.rounds = args.rounds.or(config.rounds).unwrap_or(timing.rounds);
    limits::ROUNDS.check_count(timing.rounds)?;
    timing.disturbed_retries = args
        .disturbed_retries
        .or(config.disturbed_retries)
        .unwrap_or(timing.disturbed_retries);
    limits::DISTURBED_RETRIES.check_count(timing.disturbed_retries)?;
    let threads = resolve_threads(args.threads, &HostInfo::detect())?;
    let cpu_power = args
        .cpu_power
        .as_deref()
        .or(config.cpu_power.as_deref())
        .map(limits::parse_cpu_power)
        .transpose()?;
    let embodied_kg =
        limits::EMBODIED_KG.check_optional(args.embodied_kg.or(config.embodied_kg))?;
    let max_quality_drop_points = limits::MAX_QUALITY_DROP
        .check_optional(args.max_quality_drop.or(config.max_quality_drop_points))?;
    let lifetime_years =
        limits::LIFETIME_YEARS.check_optional(args.lifetime_years.or(config.lifetime_years))?;
    let spec = RunSpec {
        threads: Some(threads),
        order_seed: rand::random(),
        cpu_power,
        embodied_kg,
        lifetime_years,
        max_quality_drop_points,
        timing,
        energy: args.energy.or(config.energy).unwrap_or(EnergyChoice::Auto),
        powercap_root: powercap_root(
            args.powercap_root
                .as_deref()
                .or(config.powercap_root.as_deref()),
        ),
        cache_dir: args
            .cache_dir
            .clone()
            .or(config.cache_dir.clone())
            .unwrap_or_else(default_cache_dir),
        cell_timeout_s,
        carbon: carbon::resolve(
            args.region.as_deref().or(config.region.as_deref()),
            args.carbon_intensity.or(config.carbon_intensity),
            args.pue.or(config.pue),
        )?,
    };
    check_cache_dir(&spec.cache_dir)?;
    let out = args
        .out
        .clone()
        .or(config.out.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OUT));
    Ok((
        Manifest {
            schema_version: SCHEMA_VERSION,
            run_id: String::new(),
            plan,
            shard: args.shard,
            spec,
            slimbench_version: crate::runner::manifest::VERSION.to_string(),
            commit: crate::runner::manifest::COMMIT.to_string(),
            started_utc: crate::results::now_utc(),
        },
        out,
    ))
}

/// The cache folder exists as a folder or can be made: a usage error before the run folder, not
/// a failed cell after it.
fn check_cache_dir(dir: &Path) -> Result<(), UsageError> {
    if dir.exists() && !dir.is_dir() {
        return Err(UsageError(format!(
            "--cache-dir (config key `cache_dir`) {}: not a folder; give a folder (it is created if missing)",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        UsageError(format!(
            "--cache-dir (config key `cache_dir`) {}: cannot create it ({e}); give a writable folder",
            dir.display()
        ))
    })
}

fn meter_settings(spec: &RunSpec, host: &HostInfo) -> Result<MeterSettings, UsageError> {
    let meter = MeterSettings {
        choice: spec.energy,
        powercap_root: spec.powercap_root.clone(),
        cpu_model: host.cpu_model.clone(),
        logical_cores: host.logical_cores,
        gpus: None,
        cpu_power: spec.cpu_power,
    };
    // Probe once here: an unreadable explicit source is a usage error (exit 2), and the fallback
    // warning of `auto` is shown once, not once a cell.
    match open_meter(&meter) {
        Ok(opened) => {
            for w in &opened.warnings {
                eprintln!("warning: {w}");
            }
            Ok(meter)
        }
        Err(e) => {
            let name = serde_json::to_value(spec.energy)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            Err(UsageError(format!("--energy {name}: {e}")))
        }
    }
}

fn done_cells(run_dir: &Path) -> anyhow::Result<Vec<Record>> {
    let run_dir = crate::run_dir::RunDir::new(run_dir);
    let path = run_dir.results_path();
    if let Some(aside) = set_aside_torn_tail(&path)? {
        eprintln!(
            "warning: {}: its last line was incomplete (a crash or a full disk mid-write); moved it to {}; its cell runs again",
            path.display(),
            aside.display()
        );
    }
    Ok(run_dir.records()?)
}

/// Runs the plan the flags describe, or resumes one.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let host = HostInfo::detect();
    // The lock is held until this function returns (a second run or resume of the folder exits
    // 2), and taken before anything is written into the folder.
    let (manifest, run_dir, meter, _lock) = match &args.resume {
        Some(dir) => {
            if args.plan.any_given() || args.shard.is_some() {
                eprintln!(
                    "warning: --resume uses the plan and settings stored in {}; the plan flags are ignored",
                    dir.display()
                );
            }
            let manifest = Manifest::read(dir)?;
            let meter = meter_settings(&manifest.spec, &host)?;
            let lock = RunLock::acquire(dir)?;
            (manifest, dir.clone(), meter, lock)
        }
        None => {
            let (mut manifest, out) = resolve_new_run(&args)?;
            // Probe the meters before creating anything: a usage error leaves no run folder.
            let meter = meter_settings(&manifest.spec, &host)?;
            let (run_id, run_dir) = create_run_folder(&out)
                .with_context(|| format!("cannot create a run folder under {}", out.display()))?;
            manifest.run_id = run_id;
            let lock = RunLock::acquire(&run_dir)?;
            manifest.write(&run_dir)?;
            (manifest, run_dir, meter, lock)
        }
    };
    let result = measure_and_report(&args, &manifest, &run_dir, meter, host);
    match result {
        Err(e) if crate::error::io_cause(&e).is_some() => Err(e.context(format!(
            "run {} stopped on a file-system error; the records written so far are kept: once it is fixed, resume with: slimbench run --resume {} (add --retry-failed to measure again a cell that failed for the same reason)",
            manifest.run_id,
            run_dir.display()
        ))),
        other => other,
    }
}

/// Runs the cells of `manifest` not yet recorded in `run_dir` (its lock held by the caller), then
/// writes the report and prints the table.
fn measure_and_report(
    args: &RunArgs,
    manifest: &Manifest,
    run_dir: &Path,
    meter: MeterSettings,
    host: HostInfo,
) -> anyhow::Result<ExitCode> {
    let cells = shard_cells(&manifest.plan, manifest.shard);
    let done: HashSet<_> = done_cells(run_dir)?
        .into_iter()
        .filter(|r| !(args.retry_failed && r.status == Status::Failed))
        .map(|r| r.key)
        .collect();
    let todo: Vec<_> = cells
        .iter()
        .filter(|c| !done.contains(c))
        .cloned()
        .collect();
    eprintln!(
        "run {}: {} cells{}, {} already recorded, {} to run on {} thread(s) -> {}",
        manifest.run_id,
        cells.len(),
        manifest
            .shard
            .map(|s| format!(
                " (share {}/{} of {})",
                s.index,
                s.count,
                manifest.plan.cells.len()
            ))
            .unwrap_or_default(),
        cells.len() - todo.len(),
        todo.len(),
        manifest
            .spec
            .threads
            .map_or_else(|| "the environment's".into(), |n| n.to_string()),
        run_dir.display()
    );
    {
        // Training is metered like a cell; each worker reads the recorded costs from the cache.
        let _build_meter = crate::meter::build::BuildMeter::install(&meter, &host.cpu_model);
        prepare_variants(&todo, &manifest.spec.cache_dir);
    }
    drop(slimbench_models::build_cost::take_costs());

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupted);
        let installed = ctrlc::set_handler(move || {
            flag.store(true, Ordering::SeqCst);
            eprintln!(
                "\ninterrupt (Ctrl-C or SIGTERM): stopping after the current cell (a second one does not hurry it)"
            );
        });
        if let Err(e) = installed {
            eprintln!("warning: cannot install the Ctrl-C handler ({e}); Ctrl-C will stop at once");
        }
    }
    let settings = RunSettings {
        run_id: manifest.run_id.clone(),
        run_dir: run_dir.to_path_buf(),
        cache_dir: manifest.spec.cache_dir.clone(),
        timing: manifest.spec.timing.clone(),
        meter,
        cell_timeout: Duration::from_secs_f64(
            limits::CELL_TIMEOUT_S.check(manifest.spec.cell_timeout_s)?,
        ),
        carbon: manifest.spec.carbon.clone(),
        host,
        threads: manifest.spec.threads,
        order_seed: manifest.spec.order_seed,
    };
    let outcome = run_cells(
        &todo,
        &settings,
        &RunOptions {
            json_lines: args.json,
            interrupted,
        },
    )?;

    let data = RunData::load(run_dir)?;
    export_all(&data, run_dir, &ALL_EXPORTS)?;
    let records = data.records;
    if !args.json {
        crate::stdout::print(&table::render_console(&records));
        if let Some(e) = records.iter().find_map(|r| r.energy.as_ref()) {
            if e.measured {
                crate::stdout::println(&format!("energy: measured ({}): {}", e.source, e.method));
            } else {
                crate::stdout::println(&format!(
                    "energy: ESTIMATED ({}), not measured: {}",
                    e.source, e.method
                ));
            }
        }
        crate::stdout::println(&format!(
            "report: {} (report.html, report.md, results.csv, emissions.csv)",
            run_dir.display()
        ));
    }
    let plan_models: Vec<&str> = manifest
        .plan
        .cells
        .iter()
        .map(|c| c.model.as_str())
        .collect();
    if let Some(hint) = slimbench_models::catalog::next_model_hint(&plan_models) {
        if args.json {
            eprintln!("{hint}");
        } else {
            crate::stdout::println(&hint);
        }
    }
    if outcome.interrupted {
        eprintln!(
            "interrupted: {} of {} cells recorded; resume with: slimbench run --resume {}",
            records.len(),
            cells.len(),
            run_dir.display()
        );
        return Ok(ExitCode::from(130));
    }
    Ok(if records.iter().any(|r| r.status == Status::Failed) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn threads_come_from_the_flag_else_the_physical_cores() {
        assert_eq!(resolve_threads(Some(3), &host(Some(4))).unwrap(), 3);
        if std::env::var("RAYON_NUM_THREADS").is_err() {
            assert_eq!(resolve_threads(None, &host(Some(4))).unwrap(), 4);
            assert_eq!(resolve_threads(None, &host(None)).unwrap(), 8);
        }
        let err = resolve_threads(Some(0), &host(Some(4))).unwrap_err();
        assert!(err.0.contains("--threads"), "{}", err.0);
    }
}
