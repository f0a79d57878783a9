//! slimbench: measures what AI model compression buys. The CLI, the runner that isolates each
//! cell in a worker process, the meters, statistics, records and exporters.
//!
//! See `ARCHITECTURE.md` at the repository root for the map of modules and their invariants.

pub mod analysis;
pub mod atomic;
pub mod calibrate;
pub mod carbon;
pub mod chart;
pub mod cli;
pub mod compare;
pub mod config;
pub mod error;
pub mod export;
pub mod host;
pub mod interference;
pub mod limits;
pub mod memory;
pub mod meter;
pub mod plan;
pub mod recorder;
pub mod results;
pub mod rounds;
pub mod run_dir;
pub mod runner;
pub mod settings;
pub mod stats;
pub mod stdout;
pub mod units;
