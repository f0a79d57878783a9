//! Energy per iteration of every digits variant, as a criterion `Measurement` built on slimbench's
//! meters (RAPL, NVML, else the estimate). The meter's source is part of every benchmark id
//! (`energy[estimated-tdp]/...`), so an estimate is never mistaken for a measurement. Criterion's
//! console still prints "time"; the values are joules (shown in J, mJ or uJ).

mod common;

use std::sync::Mutex;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkId, Criterion, Throughput};
use slimbench::host::HostInfo;
use slimbench::meter::choose::{open_meter, EnergyChoice, MeterSettings};
use slimbench::meter::rapl::powercap_root;
use slimbench::meter::record::source_label;
use slimbench::meter::EnergyMeter;

/// Joules drawn between `start` and `end`, summed over the meter's counted domains.
struct Energy {
    meter: Mutex<Box<dyn EnergyMeter>>,
    counted: Vec<bool>,
}

impl Energy {
    fn read(&self) -> f64 {
        let mut meter = self.meter.lock().unwrap_or_else(|p| p.into_inner());
        match meter.read_joules() {
            Ok(j) => j
                .iter()
                .zip(&self.counted)
                .filter(|(_, c)| **c)
                .map(|(j, _)| j)
                .sum(),
            Err(e) => panic!("energy meter failed: {e}"),
        }
    }
}

struct JoulesFormatter;

impl JoulesFormatter {
    fn scale(typical: f64) -> (f64, &'static str) {
        if typical >= 1.0 {
            (1.0, "J")
        } else if typical >= 1e-3 {
            (1e3, "mJ")
        } else {
            (1e6, "uJ")
        }
    }
}

impl ValueFormatter for JoulesFormatter {
    fn scale_values(&self, typical_value: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = Self::scale(typical_value);
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        _: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        match throughput {
            Throughput::Elements(n) => {
                values.iter_mut().for_each(|v| *v /= *n as f64);
                "J/item"
            }
            _ => "J",
        }
    }

    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "J"
    }
}

impl Measurement for Energy {
    type Intermediate = f64;
    type Value = f64;

    fn start(&self) -> f64 {
        self.read()
    }
    fn end(&self, start: f64) -> f64 {
        (self.read() - start).max(0.0)
    }
    fn add(&self, a: &f64, b: &f64) -> f64 {
        a + b
    }
    fn zero(&self) -> f64 {
        0.0
    }
    fn to_f64(&self, v: &f64) -> f64 {
        *v
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &JoulesFormatter
    }
}

fn energy_measurement() -> (Energy, String) {
    let host = HostInfo::detect();
    let opened = open_meter(&MeterSettings {
        choice: EnergyChoice::Auto,
        powercap_root: powercap_root(None),
        cpu_model: host.cpu_model,
        logical_cores: host.logical_cores,
        gpus: None,
        cpu_power: None,
    })
    .expect("a meter opens (the estimate always does)");
    for w in &opened.warnings {
        eprintln!("warning: {w}");
    }
    let label = source_label(opened.meter.domains());
    let counted = opened
        .meter
        .domains()
        .iter()
        .map(|d| d.kind.counts_in_total())
        .collect();
    (
        Energy {
            meter: Mutex::new(opened.meter),
            counted,
        },
        label,
    )
}

fn main() {
    let (measurement, label) = energy_measurement();
    // Short windows: 40 benchmarks must fit the 10-minute budget of `cargo bench` on 2 cores.
    let mut criterion = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(50)
        .with_measurement(measurement)
        .configure_from_args();
    energy_groups(&mut criterion, &label);
    criterion.final_summary();
}

/// One group per model, one benchmark per variant and batch size, the source in the group name.
fn energy_groups(c: &mut Criterion<Energy>, label: &str) {
    for (model, variants) in common::default_variants() {
        let mut group = c.benchmark_group(format!("energy[{label}]/{model}"));
        for (technique, batch_size, mut workload) in variants {
            group.throughput(Throughput::Elements(batch_size as u64));
            group.bench_function(
                BenchmarkId::new(format!("{technique}/cpu"), batch_size),
                |b| b.iter(|| workload.run_batch().expect("batch runs")),
            );
        }
        group.finish();
    }
}
