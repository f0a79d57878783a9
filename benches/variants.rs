//! Latency of every digits variant at batch 1 and 32 on the CPU: one criterion group per model,
//! one benchmark per variant and batch size. Filter with `cargo bench --bench variants -- q8_0`.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn variants(c: &mut Criterion) {
    for (model, variants) in common::default_variants() {
        let mut group = c.benchmark_group(model);
        for (technique, batch_size, mut workload) in variants {
            group.bench_function(
                BenchmarkId::new(format!("{technique}/cpu"), batch_size),
                |b| b.iter(|| workload.run_batch().expect("batch runs")),
            );
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
