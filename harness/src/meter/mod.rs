//! Energy meters, one file a source, behind one trait: a meter reads cumulative energy per domain
//! (joules since it was opened); a window is the difference of two reads, and power is the
//! difference over time between two samples. Every figure carries its [`Source`].

pub mod build;
pub mod choose;
pub mod estimate;
pub mod microarch;
pub mod nvml;
pub mod rapl;
pub mod record;
pub mod sampler;

use serde::{Deserialize, Serialize};

pub use record::{DomainEnergy, EnergyRecord};

/// Where an energy figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Source {
    /// Measured: Intel/AMD RAPL through powercap sysfs.
    #[serde(rename = "rapl")]
    Rapl,
    /// Measured: NVIDIA NVML (energy counter or integrated power).
    #[serde(rename = "nvml")]
    Nvml,
    /// Estimated: the process's CPU time times a per-thread share of the CPU's TDP, plus a RAM model.
    #[serde(rename = "estimated-tdp")]
    EstimatedTdp,
    /// Estimated: watts per vCPU at the window's utilisation (Cloud Carbon Footprint's
    /// coefficients, or `--cpu-power`), plus a RAM model.
    #[serde(rename = "estimated-vcpu")]
    EstimatedVcpu,
}

impl Source {
    /// The label written in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Rapl => "rapl",
            Source::Nvml => "nvml",
            Source::EstimatedTdp => "estimated-tdp",
            Source::EstimatedVcpu => "estimated-vcpu",
        }
    }

    /// True for sources that measure rather than estimate.
    pub fn is_measured(self) -> bool {
        !matches!(self, Source::EstimatedTdp | Source::EstimatedVcpu)
    }
}

/// What part of the machine a domain covers; decides what is summed into the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DomainKind {
    /// A CPU package (counted in the total).
    CpuPackage,
    /// DRAM attached to a package, separate from package energy (counted in the total).
    Dram,
    /// The whole platform (psys): reported, never added to the total, since it contains the rest.
    Platform,
    /// One GPU (counted in the total).
    Gpu,
    /// Estimated CPU energy of the worker process (counted in the total).
    CpuEstimate,
    /// Estimated RAM energy of the worker process (counted in the total).
    RamEstimate,
}

impl DomainKind {
    /// Whether this domain's energy is part of the record's total.
    pub fn counts_in_total(self) -> bool {
        !matches!(self, DomainKind::Platform)
    }
}

/// One domain a meter reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainInfo {
    /// Name, unique within a run (`package-0`, `dram-0`, `gpu-0`, `cpu`, `ram`).
    pub name: String,
    /// What it covers.
    pub kind: DomainKind,
    /// Where its figures come from.
    pub source: Source,
}

/// Errors of the meters. Each says what was found and, where it can, how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// The source is not present on this machine.
    #[error("{0}")]
    Unavailable(String),
    /// A counter file exists but cannot be read for lack of permission.
    #[error("permission denied reading {path}: {hint}")]
    PermissionDenied {
        /// The file.
        path: String,
        /// How to grant access.
        hint: String,
    },
    /// A counter held something that is not a number.
    #[error("{path}: expected an integer counter, found {content:?}")]
    Garbage {
        /// The file.
        path: String,
        /// What it held.
        content: String,
    },
    /// Any other failure reading the source.
    #[error("{0}")]
    Read(String),
}

/// A source of cumulative energy per domain.
pub trait EnergyMeter: Send {
    /// The domains, in the order [`EnergyMeter::read_joules`] returns them.
    fn domains(&self) -> &[DomainInfo];
    /// Cumulative energy per domain in joules since the meter was opened, corrected for counter
    /// wraparound. Must be called at least once a second for wrap correction to hold.
    fn read_joules(&mut self) -> Result<Vec<f64>, MeterError>;
    /// How often the underlying counter updates, in seconds (for window sizing).
    fn update_period_s(&self) -> f64;
    /// The slowest polling rate, in Hz, at which this meter stays correct.
    fn min_poll_hz(&self) -> f64;
    /// Intervals that had to be dropped (a counter going backwards with no plausible wrap, or a
    /// step implying an implausible power).
    fn dropped_samples(&self) -> u64 {
        0
    }
    /// Intervals read so far (each read after the first closes one), for the dropped share.
    fn intervals(&self) -> u64 {
        0
    }
    /// A one-line description of how this meter gets its figures.
    fn method(&self) -> String;
    /// GPU memory peaks seen over the samples (process, device-wide), for meters that read GPUs.
    fn gpu_memory_peaks(&self) -> Option<nvml::GpuMemoryPeaks> {
        None
    }
    /// The coefficients of an estimating meter (`None` for a measuring one).
    fn estimate(&self) -> Option<estimate::EstimateParams> {
        None
    }
}
