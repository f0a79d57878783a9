//! The `slimbench` command line: one file a subcommand.

pub mod calibrate;
pub mod compare;
pub mod fetch;
pub mod list;
pub mod merge;
pub mod plan;
pub mod plan_args;
pub mod report;
pub mod run;
pub mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::UsageError;

/// slimbench measures what model compression buys: quality, size, latency, throughput, peak memory
/// and energy of each compressed variant beside the uncompressed model.
#[derive(Debug, Parser)]
#[command(name = "slimbench", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Commands,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Measure every cell of a plan (models x techniques x devices x batch sizes) and write a report.
    Run(Box<run::RunArgs>),
    /// List the models, techniques and devices known, and what this machine can measure.
    List(list::ListArgs),
    /// Print the cells of a plan and how `--shards N` splits them for a fleet.
    Plan(plan::PlanCmdArgs),
    /// Join the result folders of a plan's shares into one.
    Merge(merge::MergeArgs),
    /// Compare two result sets cell by cell; exit 1 on a regression (the CI gate).
    Compare(compare::CompareArgs),
    /// Re-render every output (CSV, JSON, Markdown and HTML reports, emissions.csv, charts) of a run folder.
    Report(report::ReportArgs),
    /// Download a text model (all-MiniLM-L6-v2) and its quality data into the models cache.
    Fetch(fetch::FetchArgs),
    /// Measure this machine's peak f32 FLOP/s and memory bandwidth, so CPU records report the
    /// fraction of the peak each variant reaches.
    Calibrate(calibrate::CalibrateArgs),
    /// Internal: measure one cell in this process and print its record (used by `run`).
    #[command(name = "__worker", hide = true)]
    Worker(worker::WorkerArgs),
}

/// Parses the command line, runs it, and maps the outcome to the exit code: 0 success, 1 some
/// cell failed or an error occurred, 2 a usage error, 3 ([`crate::error::EXIT_IO`]) a file-system
/// failure such as a full disk.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Commands::Run(_) | Commands::Worker(_)) {
        crate::stdout::exit_quietly_on_closed_pipe();
    }
    // The kernels' instruction sets are fixed on first use: a bad SLIMBENCH_KERNELS must stop
    // every command that measures before anything runs.
    if let Err(message) = slimbench_models::kernels::check_kernels_env() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Commands::Run(args) => run::run(*args),
        Commands::List(args) => list::run(args),
        Commands::Plan(args) => plan::run(args),
        Commands::Merge(args) => merge::run(args),
        Commands::Compare(args) => compare::run(args),
        Commands::Report(args) => report::run(args),
        Commands::Fetch(args) => fetch::run(args),
        Commands::Calibrate(args) => calibrate::run(args),
        Commands::Worker(args) => worker::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else if let Some(io) = crate::error::io_cause(&e) {
                eprintln!("{}", crate::error::io_advice(io));
                ExitCode::from(crate::error::EXIT_IO)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Splits comma-separated flag values, trimming blanks.
pub fn split_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}
