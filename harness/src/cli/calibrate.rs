//! `slimbench calibrate`: measures the machine's peak f32 FLOP/s and memory read bandwidth and
//! stores them in the cache folder, where each CPU cell of later runs finds them.

use std::path::PathBuf;
use std::process::ExitCode;

use slimbench_models::cache::default_cache_dir;

use crate::calibrate::{calibrate, Calibration};
use crate::error::UsageError;
use crate::host::HostInfo;

/// Arguments of `calibrate`.
#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// Threads to measure on [default: $RAYON_NUM_THREADS, else the available cores: the threads
    /// the models use].
    #[arg(long)]
    pub threads: Option<usize>,
    /// The cache folder to store calibration.json in [default: $SLIMBENCH_CACHE or
    /// ~/.cache/slimbench].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// Measures, prints and stores the calibration.
pub fn run(args: CalibrateArgs) -> anyhow::Result<ExitCode> {
    if args.threads == Some(0) {
        return Err(UsageError("--threads must be at least 1".into()).into());
    }
    let threads = args
        .threads
        .unwrap_or_else(slimbench_models::kernels::thread_count);
    let host = HostInfo::detect();
    eprintln!("calibrating {} on {threads} thread(s)...", host.cpu_model);
    let c = calibrate(&host.cpu_model, threads);
    let path = Calibration::path_in(&args.cache_dir.unwrap_or_else(default_cache_dir));
    c.save(&path)?;
    println!(
        "cpu: {} ({} threads, {} FMA loop)",
        c.cpu_model, c.threads, c.vector_path
    );
    println!("peak f32: {:.1} GFLOP/s", c.peak_gflops);
    match (c.peak_int8_gops, c.int8_path.as_deref()) {
        (Some(p), Some(path)) => println!(
            "peak int8 ({path}, the instructions of the int8 and block-format kernels): {p:.1} GOP/s"
        ),
        _ => println!(
            "peak int8: not measured (the integer kernels run their portable code here: no AVX2, \
             or SLIMBENCH_KERNELS=portable)"
        ),
    }
    println!("memory read bandwidth: {:.1} GB/s", c.read_bandwidth_gbs);
    println!(
        "ridge point: {:.1} FLOP/byte (below it a kernel is bound by memory, above by compute)",
        c.peak_gflops / c.read_bandwidth_gbs
    );
    println!(
        "saved to {}; CPU cells of later runs report their fraction of the peak",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
