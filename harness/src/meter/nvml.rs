//! NVIDIA GPUs through NVML: the total-energy counter (mJ, Volta and newer) where the device
//! supports it, else `power_usage` (mW) polled and integrated with the trapezoid rule; plus the
//! worker's and the device's GPU memory, kept as peaks over the samples.
//!
//! The NVML calls sit behind [`GpuBackend`] so that tests drive the same code with a fake. The real
//! backend loads `libnvidia-ml.so.1` at run time (nvml-wrapper), so every build compiles it and a
//! machine without the driver gets a clear "not available" instead of a crash.

use std::time::Instant;

use super::{DomainInfo, DomainKind, EnergyMeter, MeterError, Source};

/// The NVML calls the meter needs, per device index.
pub trait GpuBackend: Send {
    /// Number of GPUs.
    fn device_count(&self) -> Result<u32, MeterError>;
    /// Total energy since the driver loaded, in mJ; `Ok(None)` where the device lacks the counter.
    fn total_energy_mj(&self, index: u32) -> Result<Option<u64>, MeterError>;
    /// Current power draw in mW.
    fn power_mw(&self, index: u32) -> Result<u32, MeterError>;
    /// Device-wide memory in use, in bytes.
    fn device_memory_used(&self, index: u32) -> Result<u64, MeterError>;
    /// GPU memory used by process `pid`, in bytes, if it runs compute work there.
    fn process_memory(&self, index: u32, pid: u32) -> Result<Option<u64>, MeterError>;
}

/// The real NVML, loaded at run time.
pub struct RealNvml {
    nvml: nvml_wrapper::Nvml,
}

impl RealNvml {
    /// Loads `libnvidia-ml.so.1`; says so when the library or a GPU is missing.
    pub fn init() -> Result<Self, MeterError> {
        use nvml_wrapper::error::NvmlError;
        match nvml_wrapper::Nvml::init() {
            Ok(nvml) => Ok(Self { nvml }),
            Err(NvmlError::LibloadingError(_)) => Err(MeterError::Unavailable(
                "libnvidia-ml.so.1 not found (no NVIDIA driver installed)".into(),
            )),
            Err(NvmlError::DriverNotLoaded) => Err(MeterError::Unavailable(
                "NVIDIA driver not loaded (no NVIDIA GPU)".into(),
            )),
            Err(e) => Err(MeterError::Unavailable(format!("NVML unavailable: {e}"))),
        }
    }
}

/// How many NVIDIA GPUs the driver reports, or why it cannot be asked.
pub fn gpu_count() -> Result<u32, MeterError> {
    RealNvml::init()?.device_count()
}

fn nvml_err(e: nvml_wrapper::error::NvmlError) -> MeterError {
    MeterError::Read(format!("NVML: {e}"))
}

impl GpuBackend for RealNvml {
    fn device_count(&self) -> Result<u32, MeterError> {
        self.nvml.device_count().map_err(nvml_err)
    }

    fn total_energy_mj(&self, index: u32) -> Result<Option<u64>, MeterError> {
        use nvml_wrapper::error::NvmlError;
        let device = self.nvml.device_by_index(index).map_err(nvml_err)?;
        match device.total_energy_consumption() {
            Ok(mj) => Ok(Some(mj)),
            Err(NvmlError::NotSupported) => Ok(None),
            Err(e) => Err(nvml_err(e)),
        }
    }

    fn power_mw(&self, index: u32) -> Result<u32, MeterError> {
        let device = self.nvml.device_by_index(index).map_err(nvml_err)?;
        device.power_usage().map_err(nvml_err)
    }

    fn device_memory_used(&self, index: u32) -> Result<u64, MeterError> {
        let device = self.nvml.device_by_index(index).map_err(nvml_err)?;
        Ok(device.memory_info().map_err(nvml_err)?.used)
    }

    fn process_memory(&self, index: u32, pid: u32) -> Result<Option<u64>, MeterError> {
        use nvml_wrapper::enums::device::UsedGpuMemory;
        let device = self.nvml.device_by_index(index).map_err(nvml_err)?;
        let procs = device.running_compute_processes().map_err(nvml_err)?;
        Ok(procs
            .iter()
            .find(|p| p.pid == pid)
            .and_then(|p| match p.used_gpu_memory {
                UsedGpuMemory::Used(b) => Some(b),
                UsedGpuMemory::Unavailable => None,
            }))
    }
}

/// How one GPU's energy is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuEnergyPath {
    /// The driver's total-energy counter.
    Counter,
    /// Power polled and integrated (trapezoid).
    PolledPower,
}

struct Gpu {
    index: u32,
    path: GpuEnergyPath,
    first_counter_mj: u64,
    last_power: Option<(Instant, f64)>,
    integrated_j: f64,
}

/// Peaks of GPU memory seen over the samples, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuMemoryPeaks {
    /// The worker process's peak on any GPU.
    pub process_bytes: Option<u64>,
    /// The device-wide peak, summed over the GPUs read.
    pub device_bytes: Option<u64>,
}

/// A meter over the GPUs of a [`GpuBackend`].
pub struct NvmlMeter<B: GpuBackend> {
    backend: B,
    gpus: Vec<Gpu>,
    infos: Vec<DomainInfo>,
    pid: u32,
    peaks: GpuMemoryPeaks,
}

impl<B: GpuBackend> NvmlMeter<B> {
    /// Opens every GPU of `backend` (or only `only` where given), choosing the counter where a
    /// device has it; `pid` is the process whose GPU memory is tracked.
    pub fn open(backend: B, only: Option<&[u32]>, pid: u32) -> Result<Self, MeterError> {
        let count = backend.device_count()?;
        if count == 0 {
            return Err(MeterError::Unavailable("NVML reports no NVIDIA GPU".into()));
        }
        let indices: Vec<u32> = match only {
            Some(list) => {
                if let Some(bad) = list.iter().find(|i| **i >= count) {
                    return Err(MeterError::Unavailable(format!(
                        "no GPU {bad}: NVML reports {count} device(s)"
                    )));
                }
                list.to_vec()
            }
            None => (0..count).collect(),
        };
        let mut gpus = Vec::new();
        let mut infos = Vec::new();
        for index in indices {
            let counter = backend.total_energy_mj(index)?;
            gpus.push(Gpu {
                index,
                path: if counter.is_some() {
                    GpuEnergyPath::Counter
                } else {
                    GpuEnergyPath::PolledPower
                },
                first_counter_mj: counter.unwrap_or(0),
                last_power: None,
                integrated_j: 0.0,
            });
            infos.push(DomainInfo {
                name: format!("gpu-{index}"),
                kind: DomainKind::Gpu,
                source: Source::Nvml,
            });
        }
        let mut meter = Self {
            backend,
            gpus,
            infos,
            pid,
            peaks: GpuMemoryPeaks::default(),
        };
        meter.read_joules()?; // first power sample, so integration starts now
        Ok(meter)
    }

    /// How each GPU's energy is read, in domain order.
    pub fn paths(&self) -> Vec<GpuEnergyPath> {
        self.gpus.iter().map(|g| g.path).collect()
    }

    /// GPU memory peaks seen so far.
    pub fn memory_peaks(&self) -> GpuMemoryPeaks {
        self.peaks
    }

    fn sample_memory(&mut self) -> Result<(), MeterError> {
        let mut device_total = 0;
        let mut process_total = None;
        for gpu in &self.gpus {
            device_total += self.backend.device_memory_used(gpu.index)?;
            if let Some(b) = self.backend.process_memory(gpu.index, self.pid)? {
                process_total = Some(process_total.unwrap_or(0) + b);
            }
        }
        self.peaks.device_bytes = Some(self.peaks.device_bytes.unwrap_or(0).max(device_total));
        if let Some(p) = process_total {
            self.peaks.process_bytes = Some(self.peaks.process_bytes.unwrap_or(0).max(p));
        }
        Ok(())
    }
}

impl<B: GpuBackend> EnergyMeter for NvmlMeter<B> {
    fn domains(&self) -> &[DomainInfo] {
        &self.infos
    }

    fn read_joules(&mut self) -> Result<Vec<f64>, MeterError> {
        let mut out = Vec::with_capacity(self.gpus.len());
        for gpu in &mut self.gpus {
            match gpu.path {
                GpuEnergyPath::Counter => {
                    let now = self.backend.total_energy_mj(gpu.index)?.ok_or_else(|| {
                        MeterError::Read(format!("GPU {}: energy counter vanished", gpu.index))
                    })?;
                    out.push(now.saturating_sub(gpu.first_counter_mj) as f64 / 1e3);
                }
                GpuEnergyPath::PolledPower => {
                    let now = Instant::now();
                    let watts = f64::from(self.backend.power_mw(gpu.index)?) / 1e3;
                    if let Some((then, last_watts)) = gpu.last_power {
                        let dt = now.duration_since(then).as_secs_f64();
                        gpu.integrated_j += 0.5 * (watts + last_watts) * dt;
                    }
                    gpu.last_power = Some((now, watts));
                    out.push(gpu.integrated_j);
                }
            }
        }
        self.sample_memory()?;
        Ok(out)
    }

    fn update_period_s(&self) -> f64 {
        // The energy counter updates every 20-100 ms; power is a 1 s average on recent GPUs.
        if self
            .gpus
            .iter()
            .any(|g| g.path == GpuEnergyPath::PolledPower)
        {
            0.1
        } else {
            0.02
        }
    }

    fn min_poll_hz(&self) -> f64 {
        if self
            .gpus
            .iter()
            .any(|g| g.path == GpuEnergyPath::PolledPower)
        {
            10.0
        } else {
            1.0
        }
    }

    fn gpu_memory_peaks(&self) -> Option<GpuMemoryPeaks> {
        Some(self.peaks)
    }

    fn method(&self) -> String {
        let parts: Vec<String> = self
            .gpus
            .iter()
            .map(|g| match g.path {
                GpuEnergyPath::Counter => format!("gpu-{}: NVML total-energy counter", g.index),
                GpuEnergyPath::PolledPower => {
                    format!(
                        "gpu-{}: NVML power polled and integrated (trapezoid)",
                        g.index
                    )
                }
            })
            .collect();
        parts.join("; ")
    }
}
