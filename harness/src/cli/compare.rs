//! `slimbench compare BASELINE CURRENT`: the regression gate. Prints a Markdown table; exits 1 on a
//! regression, 0 otherwise, 2 on unusable input.

use std::process::ExitCode;

use crate::compare::{compare, load_set, markdown, Gate, Metric, Mode, Thresholds, ALL_METRICS};
use crate::error::UsageError;

/// Arguments of `compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Baseline: a run folder (with results.jsonl), or a criterion baseline as DIR@NAME
    /// (e.g. target/criterion@main).
    pub baseline: String,
    /// Current results, in the same form.
    pub current: String,
    /// Allowed worsening of a metric, METRIC=VALUE (percent; points for quality). Repeatable.
    /// Defaults: latency=5 energy=10 memory=5 size=0 quality=0.5.
    #[arg(long = "threshold", value_name = "METRIC=VALUE")]
    pub thresholds: Vec<String>,
    /// Metrics to gate, comma-separated [default: all: latency,energy,memory,size,quality].
    #[arg(long, value_delimiter = ',')]
    pub metrics: Vec<Metric>,
    /// Accept cells measured in the baseline and missing from the current set (a smaller plan or
    /// one shard); without it each is a regression. A cell that failed is a regression regardless.
    #[arg(long)]
    pub allow_missing: bool,
    /// Gate latency and energy on the figures themselves, not on each cell's ratio to its own
    /// run's baseline (the default where both runs have the baseline): for two runs on the same
    /// machine in the same hour.
    #[arg(long)]
    pub absolute: bool,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A second run of the same plan, measured after CURRENT (same form): a latency, energy or
    /// memory change that CURRENT flags is a regression only when this run flags it too, so one
    /// disturbed run cannot fail the gate. Quality, size and lost cells are judged on CURRENT.
    #[arg(long, value_name = "RUN")]
    pub confirm: Option<String>,
}

/// Runs the comparison.
pub fn run(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let mut thresholds = Thresholds::default();
    for t in &args.thresholds {
        thresholds.set(t)?;
    }
    let baseline = load_set(&args.baseline)?;
    let current = load_set(&args.current)?;
    let metrics = if args.metrics.is_empty() {
        ALL_METRICS.to_vec()
    } else {
        args.metrics.clone()
    };
    let confirmation = args.confirm.as_deref().map(load_set).transpose()?;
    let gate = Gate {
        thresholds: &thresholds,
        metrics: &metrics,
        seed: args.seed,
        allow_missing: args.allow_missing,
        mode: if args.absolute {
            Mode::Absolute
        } else {
            Mode::Relative
        },
    };
    let result = compare(&baseline, &current, confirmation.as_ref(), &gate);
    if result.cells.is_empty() && result.lost.is_empty() {
        return Err(UsageError(format!(
            "no cell of {} matches a cell of {} (baseline has {}, current has {}); compare runs of the same plan",
            args.baseline,
            args.current,
            baseline.len(),
            current.len()
        ))
        .into());
    }
    print!("{}", markdown(&result));
    Ok(if result.regressed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
