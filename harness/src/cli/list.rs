//! `slimbench list`: the models, techniques, devices and engines known, and each engine's and
//! energy source's state here.

use std::path::PathBuf;
use std::process::ExitCode;

use slimbench_models::catalog;

use crate::host::HostInfo;
use crate::meter::choose::{availability, EnergyChoice, MeterSettings};
use crate::meter::rapl::powercap_root;

/// Arguments of `list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Powercap sysfs root to probe for RAPL (default /sys/class/powercap, or $SLIMBENCH_POWERCAP_ROOT).
    #[arg(long)]
    pub powercap_root: Option<PathBuf>,
}

/// Prints the catalogue and the energy sources.
pub fn run(args: ListArgs) -> anyhow::Result<ExitCode> {
    println!("models:");
    for (name, about) in catalog::models() {
        println!("  {name:<28} {about}");
    }
    println!("techniques:");
    for (name, about) in slimbench_models::technique::techniques() {
        println!("  {name:<28} {about}");
    }
    println!("devices:");
    for (name, about) in catalog::DEVICES {
        println!("  {name:<28} {about}");
    }
    if slimbench_models::device::CUDA_BUILT {
        match crate::meter::nvml::gpu_count() {
            Ok(n) => println!("  cuda: built in; {n} NVIDIA GPU(s) here"),
            Err(e) => println!("  cuda: built in; no GPU usable here: {e}"),
        }
    } else {
        println!("  cuda: not available: built without the cuda feature");
    }
    println!("engines:");
    for (name, about) in slimbench_models::engine::ENGINES {
        let engine: slimbench_models::engine::Engine = name.parse().map_err(anyhow::Error::msg)?;
        let state = match catalog::check_engine(engine) {
            Ok(()) => "available".to_string(),
            Err(e) => format!("not available: {e}"),
        };
        println!("  {name:<28} {about}; {state}");
    }
    let host = HostInfo::detect();
    println!(
        "host: {} ({} logical cores), {}, {:.1} GiB",
        host.cpu_model,
        host.logical_cores,
        host.os,
        host.total_memory_bytes as f64 / (1u64 << 30) as f64
    );
    println!("energy sources:");
    let settings = MeterSettings {
        choice: EnergyChoice::Auto,
        powercap_root: powercap_root(args.powercap_root.as_deref()),
        cpu_model: host.cpu_model,
        logical_cores: host.logical_cores,
        gpus: None,
        cpu_power: None,
    };
    for s in availability(&settings) {
        let state = if s.available {
            "available"
        } else {
            "unavailable"
        };
        println!("  {:<28} {state}: {}", s.source, s.detail);
    }
    Ok(ExitCode::SUCCESS)
}
