//! Runs a plan: each cell in a fresh worker process of this same binary, records appended to
//! `results.jsonl` as each cell ends.

pub mod parent;
pub mod worker;

pub use parent::{run_plan, RunOutcome, RunSettings};
pub use worker::{TimingSettings, WorkerRequest};
