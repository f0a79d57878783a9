//! All integration tests of the harness in one binary, a module per area.

mod charts;
mod cli;
mod compare;
mod engines;
mod exporters;
mod fake_powercap;
mod hostile;
mod llm;
mod memory;
mod nvml_fake;
mod rapl;
mod runner;
mod schema;
mod text;
