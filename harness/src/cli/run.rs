//! `slimbench run`: resolves the plan and settings (flags over config file over defaults), or takes
//! them from a run folder with `--resume`; runs the missing cells; writes the report.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;

use super::plan_args::{load_optional_config, PlanArgs};
use crate::analysis::RunData;
use crate::error::UsageError;
use crate::export::{export_all, table, ALL_EXPORTS};
use crate::host::HostInfo;
use crate::meter::choose::{open_meter, MeterSettings};
use crate::plan::Plan;
use crate::results::{set_aside_torn_tail, Record, Status, SCHEMA_VERSION};
use crate::runner::lock::RunLock;
use crate::runner::manifest::{shard_cells, Manifest, RunSpec, Shard};
use crate::runner::parent::{create_run_folder, prepare_variants};
use crate::runner::{run_cells, RunOptions, RunSettings};
use crate::settings::SettingValues;

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// What to run.
    #[command(flatten)]
    pub plan: PlanArgs,
    /// How to measure it: every setting that a config file may also give.
    #[command(flatten)]
    pub settings: SettingValues,
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
}

/// The manifest of a new run (its id left empty until its folder exists) and the folder under
/// which the run's folder is to be created: the plan, and the settings given as flags over those
/// of the config file.
fn resolve_new_run(args: &RunArgs) -> Result<(Manifest, PathBuf), UsageError> {
    let config = load_optional_config(args.plan.config.as_deref())?;
    let plan: Plan = args.plan.resolve_plan(&config)?;
    let (spec, out) = args
        .settings
        .clone()
        .over(config.settings)
        .resolve(&HostInfo::detect())?;
    check_cache_dir(&spec.cache_dir)?;
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
    let meter = spec.meter_settings(host);
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
        spec: manifest.spec.clone(),
        host,
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
