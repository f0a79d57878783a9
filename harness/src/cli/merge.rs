//! `slimbench merge`: joins the result folders of a plan's shares into one run folder, refusing
//! mixed schema versions, different plans, cells recorded twice and (unless allowed) shares
//! measured with different settings.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::analysis::RunData;
use crate::error::UsageError;
use crate::export::{export_all, ALL_EXPORTS};
use anyhow::Context;

use crate::results::order_by_plan;
use crate::run_dir::RunDir;
use crate::runner::manifest::Manifest;
use crate::runner::parent::new_run_id;
use slimbench_models::workload::Cell;

/// Arguments of `merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Run folders to join (each with run.json and results.jsonl).
    #[arg(required = true, num_args = 1..)]
    pub dirs: Vec<PathBuf>,
    /// Folder to write the joined run into (created; must not hold results already).
    #[arg(long)]
    pub out: PathBuf,
    /// Join shares measured with different settings (timing, energy source, threads, grid
    /// intensity, PUE) anyway: each record keeps its own threads and CO2e settings, and the report
    /// and emissions.csv use each cell's own.
    #[arg(long)]
    pub allow_mixed_settings: bool,
}

/// Joins the folders.
pub fn run(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let mut first: Option<(PathBuf, Manifest)> = None;
    let mut seen: HashMap<Cell, PathBuf> = HashMap::new();
    let mut records = Vec::new();
    for dir in &args.dirs {
        let manifest = Manifest::read(dir)?;
        if let Some((first_dir, first_manifest)) = &first {
            if first_manifest.plan != manifest.plan {
                return Err(UsageError(format!(
                    "mismatched plans: {} and {} were made from different plans; merge only shares of one plan",
                    first_dir.display(),
                    dir.display()
                ))
                .into());
            }
            let differences = first_manifest.spec.measurement_differences(&manifest.spec);
            if !differences.is_empty() {
                if !args.allow_mixed_settings {
                    return Err(UsageError(format!(
                        "mismatched settings: {} and {} were measured differently ({}); rerun the share with the same flags, or join them with --allow-mixed-settings (each cell then keeps its own settings)",
                        first_dir.display(),
                        dir.display(),
                        differences.join("; ")
                    ))
                    .into());
                }
                eprintln!(
                    "warning: {} and {} were measured differently ({}); each cell keeps its own settings",
                    first_dir.display(),
                    dir.display(),
                    differences.join("; ")
                );
            }
        } else {
            first = Some((dir.clone(), manifest.clone()));
        }
        let found = RunDir::new(dir).records()?;
        for r in found {
            if let Some(other) = seen.insert(r.key.clone(), dir.clone()) {
                return Err(UsageError(format!(
                    "cell {} is recorded in both {} and {}",
                    r.key,
                    other.display(),
                    dir.display()
                ))
                .into());
            }
            records.push(r);
        }
    }
    let Some((_, mut manifest)) = first else {
        return Err(UsageError("merge needs at least one folder".into()).into());
    };
    let out = RunDir::new(&args.out);
    let results_path = out.results_path();
    if results_path.exists() {
        return Err(UsageError(format!(
            "{} already holds results; choose an empty --out",
            args.out.display()
        ))
        .into());
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| UsageError(format!("cannot create {}: {e}", args.out.display())))?;
    let records = order_by_plan(records, &manifest.plan);
    manifest.run_id = format!("merge-{}", new_run_id());
    manifest.shard = None;
    manifest.write(&args.out)?;
    // The joined records in one write, whole or not at all: an interrupted merge leaves no
    // half-joined results.jsonl, and running it again starts over.
    let mut lines = String::new();
    for r in &records {
        lines.push_str(&serde_json::to_string(r)?);
        lines.push('\n');
    }
    crate::atomic::write(&results_path, lines.as_bytes())?;
    let traces = out.traces_dir();
    for dir in &args.dirs {
        for (name, path) in RunDir::new(dir).trace_files() {
            std::fs::create_dir_all(&traces)
                .with_context(|| format!("cannot create {}", traces.display()))?;
            crate::atomic::copy(&path, &traces.join(name))?;
        }
    }
    export_all(&RunData::load(&args.out)?, &args.out, &ALL_EXPORTS)?;
    let missing: Vec<String> = manifest
        .plan
        .cells
        .iter()
        .filter(|c| !seen.contains_key(c))
        .map(|c| c.to_string())
        .collect();
    println!(
        "merged {} folders: {} of {} cells -> {}",
        args.dirs.len(),
        records.len(),
        manifest.plan.cells.len(),
        args.out.display()
    );
    if !missing.is_empty() {
        println!("missing cells ({}):", missing.len());
        for m in &missing {
            println!("  {m}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
