//! `slimbench __worker`: measures one cell in this process and prints its record as one JSON line.

use std::process::ExitCode;

use anyhow::Context;

use crate::runner::worker::{run_cell, WorkerRequest};

/// Arguments of the hidden worker subcommand.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The cell and settings, as JSON.
    #[arg(long)]
    pub request: String,
}

/// Runs the worker.
pub fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let request: WorkerRequest =
        serde_json::from_str(&args.request).context("bad worker request")?;
    let record = run_cell(&request);
    println!("{}", serde_json::to_string(&record)?);
    Ok(ExitCode::SUCCESS)
}
