//! Does the power sampler slow what it measures? The digits MLP at batch 1 with the sampler off,
//! polling at 10 Hz and at 100 Hz, side by side. The meter is the one `--energy auto` picks here
//! (RAPL where readable, else the estimate). Compare the medians in
//! `target/criterion/sampler_overhead/*/new/estimates.json`.

use criterion::{criterion_group, criterion_main, Criterion};
use slimbench::host::HostInfo;
use slimbench::meter::choose::{open_meter, EnergyChoice, MeterSettings};
use slimbench::meter::rapl::powercap_root;
use slimbench::meter::sampler::Sampler;
use slimbench_models::workload::{build_workload, WorkloadSpec};

fn overhead(c: &mut Criterion) {
    let spec = WorkloadSpec {
        model: "digits-mlp".into(),
        technique: "fp32".into(),
        device: "cpu".into(),
        batch_size: 1,
        cache_dir: slimbench_models::cache::default_cache_dir(),
    };
    let mut workload = build_workload(&spec).expect("digits workload builds");
    let host = HostInfo::detect();
    let settings = MeterSettings {
        choice: EnergyChoice::Auto,
        powercap_root: powercap_root(None),
        cpu_model: host.cpu_model,
        logical_cores: host.logical_cores,
        gpus: None,
    };
    let mut group = c.benchmark_group("sampler_overhead");
    for (name, hz) in [("off", 0.0), ("10hz", 10.0), ("100hz", 100.0)] {
        let meter = open_meter(&settings).expect("a meter opens").meter;
        let sampler = (hz > 0.0).then(|| Sampler::start(meter, hz));
        group.bench_function(name, |b| {
            b.iter(|| workload.run_batch().expect("batch runs"))
        });
        if let Some(s) = sampler {
            let (samples, _, err) = s.stop();
            assert!(err.is_none(), "sampler error: {err:?}");
            eprintln!("{name}: {} samples taken", samples.len());
        }
    }
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
