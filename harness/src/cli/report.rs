//! `slimbench report DIR`: re-renders every output of a run folder from `run.json`,
//! `results.jsonl` and `traces/` alone.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::analysis::RunData;
use crate::export::{export_all, ALL_EXPORTS};

/// Arguments of `report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run folder.
    pub dir: PathBuf,
    /// Points of the baseline's quality a recommended variant may lose, for this rendering
    /// [default: the run's, else 1].
    #[arg(long, value_name = "POINTS")]
    pub max_quality_drop: Option<f64>,
}

/// Renders the outputs.
pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let mut data = RunData::load(&args.dir)?;
    if let Some(points) = args.max_quality_drop {
        data.manifest.spec.max_quality_drop_points =
            Some(crate::limits::MAX_QUALITY_DROP.check(points)?);
    }
    export_all(&data, &args.dir, &ALL_EXPORTS)?;
    for t in ALL_EXPORTS {
        println!("{}", args.dir.join(t.file_name()).display());
    }
    println!("{}", args.dir.join("charts").display());
    Ok(ExitCode::SUCCESS)
}
