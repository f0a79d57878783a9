//! Runs a plan: each cell in a fresh worker process of this same binary, records appended to
//! `results.jsonl` as each cell ends.

pub mod lock;
pub mod manifest;
pub mod parent;
pub mod timing;
pub mod worker;

pub use parent::{run_cells, RunOptions, RunOutcome, RunSettings};
pub use timing::TimingSettings;
pub use worker::WorkerRequest;
