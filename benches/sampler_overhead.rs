//! Does the power sampler slow what it measures? The digits MLP at batch 1 with the sampler off,
//! polling at 10 Hz and at 100 Hz, side by side. The meter is the one `--energy auto` picks here
//! (RAPL where readable, else the estimate). Compare the medians in
//! `target/criterion/sampler_overhead/*/new/estimates.json`; "off" runs before and after the
//! sampled runs.

use std::time::{Duration, Instant};

use criterion::Criterion;
use slimbench::host::HostInfo;
use slimbench::meter::choose::{open_meter, EnergyChoice, MeterSettings};
use slimbench::meter::rapl::powercap_root;
use slimbench::meter::sampler::Sampler;
use slimbench_models::catalog::build_workload;
use slimbench_models::workload::{Cell, WorkloadSpec};

fn spec() -> WorkloadSpec {
    WorkloadSpec {
        cell: Cell::new(
            "digits-mlp",
            slimbench_models::technique::Technique::baseline(),
            "cpu",
            1,
        ),
        cache_dir: slimbench_models::cache::default_cache_dir(),
        model_inputs: Default::default(),
    }
}

fn meter_settings() -> MeterSettings {
    let host = HostInfo::detect();
    MeterSettings {
        choice: EnergyChoice::Auto,
        powercap_root: powercap_root(None),
        cpu_model: host.cpu_model,
        logical_cores: host.logical_cores,
        gpus: None,
        cpu_power: None,
    }
}

fn overhead(c: &mut Criterion) {
    let mut workload = build_workload(&spec())
        .expect("digits workload builds")
        .workload;
    let settings = meter_settings();
    let mut group = c.benchmark_group("sampler_overhead");
    // "off" runs first and last, so that drift over the run shows up as a difference between the
    // two baselines rather than as sampler overhead.
    for (name, hz) in [
        ("off", 0.0),
        ("10hz", 10.0),
        ("100hz", 100.0),
        ("off-again", 0.0),
    ] {
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
    // The cost of one sample bounds the sampler's share of a core: cost x rate.
    let mut meter = open_meter(&settings).expect("a meter opens").meter;
    group.bench_function("one-sample", |b| {
        b.iter(|| meter.read_joules().expect("meter reads"))
    });
    group.finish();
}

/// The A/B test that answers the question on a noisy machine: 60 rounds, each running the batch
/// for 150 ms with the sampler off, at 10 Hz and at 100 Hz, in a rotating order, so that drift of
/// the machine falls on all three alike. Prints the median latency of each and the ratios.
fn interleaved() {
    let mut workload = build_workload(&spec())
        .expect("digits workload builds")
        .workload;
    let settings = meter_settings();
    let rates = [0.0, 10.0, 100.0];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); rates.len()];
    for round in 0..60 {
        for k in 0..rates.len() {
            let which = (round + k) % rates.len();
            let sampler = (rates[which] > 0.0).then(|| {
                Sampler::start(
                    open_meter(&settings).expect("a meter opens").meter,
                    rates[which],
                )
            });
            let end = Instant::now() + Duration::from_millis(150);
            while Instant::now() < end {
                let t = Instant::now();
                workload.run_batch().expect("batch runs");
                samples[which].push(t.elapsed().as_secs_f64() * 1e6);
            }
            if let Some(s) = sampler {
                let (_, _, err) = s.stop();
                assert!(err.is_none(), "sampler error: {err:?}");
            }
        }
    }
    let medians: Vec<f64> = samples
        .iter_mut()
        .map(|s| slimbench::stats::median_of(s))
        .collect();
    println!(
        "interleaved A/B (60 rounds x 150 ms): median us off {:.3}, 10 Hz {:.3} (ratio {:.4}), 100 Hz {:.3} (ratio {:.4})",
        medians[0],
        medians[1],
        medians[1] / medians[0],
        medians[2],
        medians[2] / medians[0]
    );
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    overhead(&mut criterion);
    interleaved();
    criterion.final_summary();
}
