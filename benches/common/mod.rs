//! What the benchmarks share: the variants of the default suite, built once each.

use slimbench_models::catalog::build_workload;
use slimbench_models::catalog::{DEFAULT_MODELS, DEFAULT_TECHNIQUES};
use slimbench_models::workload::{Cell, Workload, WorkloadSpec};

/// Batch sizes every variant is benchmarked at.
pub const BATCH_SIZES: [usize; 2] = [1, 32];

/// One variant: technique, batch size, and its workload.
pub type Variant = (String, usize, Box<dyn Workload>);

/// Per model of the default suite: the model's name and each buildable variant as
/// (technique, batch size, workload) on the CPU. A variant that does not build (for example a
/// quantization that fits no layer) is skipped with the reason on stderr.
pub fn default_variants() -> Vec<(&'static str, Vec<Variant>)> {
    let cache = slimbench_models::cache::default_cache_dir();
    DEFAULT_MODELS
        .iter()
        .map(|model| {
            let mut variants = Vec::new();
            for technique in DEFAULT_TECHNIQUES {
                for batch_size in BATCH_SIZES {
                    let Ok(technique_typed) = technique.parse() else {
                        eprintln!("skipping {model}/{technique}: not a technique");
                        continue;
                    };
                    let spec = WorkloadSpec {
                        cell: Cell::new(model, technique_typed, "cpu", batch_size),
                        cache_dir: cache.clone(),
                        model_inputs: Default::default(),
                    };
                    match build_workload(&spec) {
                        Ok(w) => variants.push((technique.to_string(), batch_size, w.workload)),
                        Err(e) => eprintln!("skipping {model}/{technique}/b{batch_size}: {e}"),
                    }
                }
            }
            (*model, variants)
        })
        .collect()
}
