//! The NVML meter driven by a fake backend: the energy-counter path and the polled-power path.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slimbench::meter::nvml::{GpuBackend, GpuEnergyPath, NvmlMeter};
use slimbench::meter::{EnergyMeter, MeterError, Source};

#[derive(Default)]
struct State {
    counter_mj: Option<u64>,
    power_mw: u32,
    device_used: u64,
    process_used: Option<u64>,
}

#[derive(Clone, Default)]
struct FakeGpu(Arc<Mutex<State>>);

impl GpuBackend for FakeGpu {
    fn device_count(&self) -> Result<u32, MeterError> {
        Ok(1)
    }
    fn total_energy_mj(&self, _: u32) -> Result<Option<u64>, MeterError> {
        Ok(self.0.lock().unwrap().counter_mj)
    }
    fn power_mw(&self, _: u32) -> Result<u32, MeterError> {
        Ok(self.0.lock().unwrap().power_mw)
    }
    fn device_memory_used(&self, _: u32) -> Result<u64, MeterError> {
        Ok(self.0.lock().unwrap().device_used)
    }
    fn process_memory(&self, _: u32, pid: u32) -> Result<Option<u64>, MeterError> {
        assert_eq!(pid, 4242);
        Ok(self.0.lock().unwrap().process_used)
    }
}

#[test]
fn counter_path_reports_the_counter_delta_in_joules() {
    let gpu = FakeGpu::default();
    gpu.0.lock().unwrap().counter_mj = Some(1_000_000);
    let mut m = NvmlMeter::open(gpu.clone(), None, 4242).unwrap();
    assert_eq!(m.paths(), vec![GpuEnergyPath::Counter]);
    assert_eq!(m.domains()[0].source, Source::Nvml);
    assert_eq!(m.domains()[0].name, "gpu-0");
    gpu.0.lock().unwrap().counter_mj = Some(1_250_500);
    assert_eq!(m.read_joules().unwrap(), vec![250.5]);
    assert!(m.method().contains("total-energy counter"));
}

#[test]
fn polling_path_integrates_power_with_the_trapezoid_rule() {
    let gpu = FakeGpu::default();
    gpu.0.lock().unwrap().power_mw = 100_000; // 100 W, no counter
    let start = Instant::now();
    let mut m = NvmlMeter::open(gpu.clone(), None, 4242).unwrap();
    assert_eq!(m.paths(), vec![GpuEnergyPath::PolledPower]);
    assert!(
        m.min_poll_hz() >= 10.0,
        "power must be polled at 10 Hz or faster"
    );
    std::thread::sleep(Duration::from_millis(100));
    let at_100w = m.read_joules().unwrap()[0];
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        at_100w > 0.0 && at_100w <= 100.0 * elapsed,
        "{at_100w} J in {elapsed} s"
    );
    assert!(at_100w >= 100.0 * 0.1, "{at_100w}");
    // A step from 100 W to 300 W: the trapezoid counts the interval at the mean, 200 W.
    gpu.0.lock().unwrap().power_mw = 300_000;
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(100));
    let after = m.read_joules().unwrap()[0] - at_100w;
    let dt = t.elapsed().as_secs_f64();
    assert!(
        after >= 200.0 * 0.1 && after <= 200.0 * (dt + 0.01),
        "{after} J over {dt} s"
    );
}

#[test]
fn gpu_memory_peaks_of_process_and_device() {
    let gpu = FakeGpu::default();
    gpu.0.lock().unwrap().counter_mj = Some(0);
    gpu.0.lock().unwrap().device_used = 1000;
    let mut m = NvmlMeter::open(gpu.clone(), None, 4242).unwrap();
    assert_eq!(m.memory_peaks().process_bytes, None);
    {
        let mut s = gpu.0.lock().unwrap();
        s.device_used = 5000;
        s.process_used = Some(3000);
    }
    m.read_joules().unwrap();
    {
        let mut s = gpu.0.lock().unwrap();
        s.device_used = 2000;
        s.process_used = Some(1000);
    }
    m.read_joules().unwrap();
    assert_eq!(m.memory_peaks().device_bytes, Some(5000));
    assert_eq!(m.memory_peaks().process_bytes, Some(3000));
}

#[test]
fn a_missing_device_index_is_named() {
    let err = NvmlMeter::open(FakeGpu::default(), Some(&[3]), 1)
        .err()
        .unwrap();
    assert!(err.to_string().contains("no GPU 3"), "{err}");
}

#[test]
fn real_nvml_fails_gracefully_without_a_driver() {
    match slimbench::meter::nvml::RealNvml::init() {
        Ok(_) => eprintln!("skipped: an NVIDIA driver is present on this machine"),
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains("not found") || text.contains("not loaded") || text.contains("NVML"),
                "{text}"
            );
        }
    }
}
