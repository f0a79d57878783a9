//! `slimbench plan`: prints the cells of a plan and which share of a fleet runs each.

use std::process::ExitCode;

use super::plan_args::{load_optional_config, PlanArgs};
use crate::error::UsageError;
use crate::runner::manifest::{shard_cells, Shard};

/// Arguments of `plan`.
#[derive(Debug, clap::Args)]
pub struct PlanCmdArgs {
    /// What to plan.
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Number of shares to split the plan into (`run --shard i/N` runs share i).
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
}

/// Prints the plan.
pub fn run(args: PlanCmdArgs) -> anyhow::Result<ExitCode> {
    if args.shards == 0 {
        return Err(UsageError("--shards must be at least 1".into()).into());
    }
    let config = load_optional_config(args.plan.config.as_deref())?;
    let plan = args.plan.resolve_plan(&config)?;
    println!("{} cells in {} share(s)", plan.cells.len(), args.shards);
    for (i, cell) in plan.cells.iter().enumerate() {
        println!(
            "{:>4}  share {}/{}  {cell}",
            i + 1,
            i % args.shards + 1,
            args.shards
        );
    }
    for index in 1..=args.shards {
        let shard = Shard {
            index,
            count: args.shards,
        };
        println!(
            "share {index}/{}: {} cells  (slimbench run --shard {index}/{} ...)",
            args.shards,
            shard_cells(&plan, Some(shard)).len(),
            args.shards
        );
    }
    Ok(ExitCode::SUCCESS)
}
