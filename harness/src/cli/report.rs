//! `slimbench report DIR`: re-renders every output of a run folder from `run.json`,
//! `results.jsonl` and `traces/` alone.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::export::{export_all, ALL_EXPORTS};
use crate::report::RunData;

/// Arguments of `report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run folder.
    pub dir: PathBuf,
}

/// Renders the outputs.
pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let data = RunData::load(&args.dir)?;
    export_all(&data, &args.dir, &ALL_EXPORTS)?;
    for t in ALL_EXPORTS {
        println!("{}", args.dir.join(t.file_name()).display());
    }
    println!("{}", args.dir.join("charts").display());
    Ok(ExitCode::SUCCESS)
}
