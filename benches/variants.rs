//! Latency of every digits variant at batch 1 and 32 on the CPU: one criterion group per model,
//! one benchmark per variant and batch size. Filter with `cargo bench --bench variants -- q8_0`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use slimbench_models::catalog::{DEFAULT_MODELS, DEFAULT_TECHNIQUES};
use slimbench_models::workload::{build_workload, WorkloadSpec};

fn variants(c: &mut Criterion) {
    let cache = slimbench_models::cache::default_cache_dir();
    for model in DEFAULT_MODELS {
        let mut group = c.benchmark_group(*model);
        for technique in DEFAULT_TECHNIQUES {
            for batch_size in [1usize, 32] {
                let spec = WorkloadSpec {
                    model: model.to_string(),
                    technique: technique.to_string(),
                    device: "cpu".into(),
                    batch_size,
                    cache_dir: cache.clone(),
                };
                let mut workload = match build_workload(&spec) {
                    Ok(w) => w,
                    Err(e) => {
                        eprintln!("skipping {model}/{technique}/b{batch_size}: {e}");
                        continue;
                    }
                };
                group.bench_function(
                    BenchmarkId::new(format!("{technique}/cpu"), batch_size),
                    |b| b.iter(|| workload.run_batch().expect("batch runs")),
                );
            }
        }
        group.finish();
    }
}

/// Short windows: 40 benchmarks must fit the 10-minute budget of `cargo bench` on 2 cores.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = variants
}
criterion_main!(benches);
