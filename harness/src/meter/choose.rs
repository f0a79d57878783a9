//! Which meters a cell uses (`--energy auto|rapl|nvml|estimate`), and what this machine offers.
//!
//! `auto` takes every measured source that opens; where RAPL does not, the CPU and RAM are covered
//! by the estimate, with a warning naming why, and the record's label says which estimate
//! (`estimated-vcpu` or `estimated-tdp`). Asking
//! for a measured source that cannot be read is an error with what was found. Never a silent
//! fallback.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::estimate::{EstimateMeter, EstimateParams};
use super::microarch::{CpuIdentity, VcpuPower};
use super::nvml::{NvmlMeter, RealNvml};
use super::rapl::RaplMeter;
use super::{DomainInfo, EnergyMeter, MeterError};

/// The `--energy` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EnergyChoice {
    /// Every measured source available; the estimate (with a warning) where none is.
    Auto,
    /// RAPL only; an error when it cannot be read.
    Rapl,
    /// NVML only; an error when it cannot be read.
    Nvml,
    /// The estimate only (per vCPU or TDP, see `meter::estimate`).
    Estimate,
}

/// Where the meters look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterSettings {
    /// The `--energy` choice.
    pub choice: EnergyChoice,
    /// The powercap root (default `/sys/class/powercap`).
    pub powercap_root: PathBuf,
    /// CPU model string, for the TDP table.
    pub cpu_model: String,
    /// Logical cores, for the per-thread share of TDP.
    pub logical_cores: usize,
    /// GPUs to read (`None`: all that NVML reports).
    pub gpus: Option<Vec<u32>>,
    /// Watts per vCPU at 0% and 100% utilisation for the estimate (`--cpu-power`), instead of
    /// the table's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_power: Option<VcpuPower>,
}

impl MeterSettings {
    /// The estimate's coefficients on this machine.
    pub fn estimate_params(&self) -> EstimateParams {
        EstimateParams::choose(
            &CpuIdentity::detect(),
            &self.cpu_model,
            self.logical_cores,
            self.cpu_power,
        )
    }
}

/// Several meters read as one; domains are concatenated in order.
pub struct CompositeMeter {
    parts: Vec<Box<dyn EnergyMeter>>,
    infos: Vec<DomainInfo>,
}

impl CompositeMeter {
    /// Joins `parts`.
    pub fn new(parts: Vec<Box<dyn EnergyMeter>>) -> Self {
        let infos = parts.iter().flat_map(|p| p.domains().to_vec()).collect();
        Self { parts, infos }
    }
}

impl EnergyMeter for CompositeMeter {
    fn domains(&self) -> &[DomainInfo] {
        &self.infos
    }

    fn read_joules(&mut self) -> Result<Vec<f64>, MeterError> {
        let mut out = Vec::with_capacity(self.infos.len());
        for p in &mut self.parts {
            out.extend(p.read_joules()?);
        }
        Ok(out)
    }

    fn update_period_s(&self) -> f64 {
        self.parts
            .iter()
            .map(|p| p.update_period_s())
            .fold(0.0, f64::max)
    }

    fn min_poll_hz(&self) -> f64 {
        self.parts
            .iter()
            .map(|p| p.min_poll_hz())
            .fold(0.0, f64::max)
    }

    fn dropped_samples(&self) -> u64 {
        self.parts.iter().map(|p| p.dropped_samples()).sum()
    }

    fn intervals(&self) -> u64 {
        self.parts.iter().map(|p| p.intervals()).max().unwrap_or(0)
    }

    fn gpu_memory_peaks(&self) -> Option<super::nvml::GpuMemoryPeaks> {
        self.parts.iter().find_map(|p| p.gpu_memory_peaks())
    }

    fn estimate(&self) -> Option<EstimateParams> {
        self.parts.iter().find_map(|p| p.estimate())
    }

    fn method(&self) -> String {
        self.parts
            .iter()
            .map(|p| p.method())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The meter for a cell and the warnings to print about it.
pub struct OpenedMeter {
    /// The meter.
    pub meter: Box<dyn EnergyMeter>,
    /// Warnings (for example a fallback to the estimate), each to be shown on stderr.
    pub warnings: Vec<String>,
}

/// Twice the package TDP: no step of a healthy counter implies more (turbo peaks stay well under).
fn rapl_power_bound_w(cpu_model: &str) -> f64 {
    2.0 * crate::meter::estimate::shipped_tdp(cpu_model).tdp_w
}

fn open_rapl(root: &Path, cpu_model: &str) -> Result<Box<dyn EnergyMeter>, MeterError> {
    Ok(Box::new(
        RaplMeter::open(root)?.with_power_bound(rapl_power_bound_w(cpu_model)),
    ))
}

fn open_nvml(gpus: Option<&[u32]>) -> Result<Box<dyn EnergyMeter>, MeterError> {
    let backend = RealNvml::init()?;
    Ok(Box::new(NvmlMeter::open(
        backend,
        gpus,
        std::process::id(),
    )?))
}

/// Opens the meters `settings` asks for.
pub fn open_meter(settings: &MeterSettings) -> Result<OpenedMeter, MeterError> {
    let estimate = || -> Result<Box<dyn EnergyMeter>, MeterError> {
        Ok(Box::new(EstimateMeter::open(settings.estimate_params())?))
    };
    match settings.choice {
        EnergyChoice::Rapl => Ok(OpenedMeter {
            meter: open_rapl(&settings.powercap_root, &settings.cpu_model)?,
            warnings: vec![],
        }),
        EnergyChoice::Nvml => Ok(OpenedMeter {
            meter: open_nvml(settings.gpus.as_deref())?,
            warnings: vec![],
        }),
        EnergyChoice::Estimate => Ok(OpenedMeter {
            meter: estimate()?,
            warnings: vec![],
        }),
        EnergyChoice::Auto => {
            let mut parts = Vec::new();
            let mut warnings = Vec::new();
            match open_rapl(&settings.powercap_root, &settings.cpu_model) {
                Ok(m) => parts.push(m),
                Err(rapl_err) => {
                    let estimated = estimate()?;
                    let label = estimated
                        .domains()
                        .first()
                        .map_or("estimated", |d| d.source.as_str());
                    warnings.push(format!(
                        "RAPL unavailable ({rapl_err}); CPU and RAM energy are ESTIMATED from CPU time (labelled {label}: {})",
                        estimated.method()
                    ));
                    parts.push(estimated);
                }
            }
            // NVML is only worth opening when GPUs are asked for or present.
            match open_nvml(settings.gpus.as_deref()) {
                Ok(m) => parts.push(m),
                Err(e) if settings.gpus.is_some() => warnings.push(format!(
                    "NVML unavailable ({e}); GPU energy is not measured"
                )),
                Err(_) => {}
            }
            let meter: Box<dyn EnergyMeter> = if parts.len() == 1 {
                parts.remove(0)
            } else {
                Box::new(CompositeMeter::new(parts))
            };
            Ok(OpenedMeter { meter, warnings })
        }
    }
}

/// Whether one source can be read here, and why not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceStatus {
    /// `rapl`, `nvml`, `estimated-vcpu` or `estimated-tdp`.
    pub source: &'static str,
    /// True when it opens.
    pub available: bool,
    /// What it would read, or why it cannot.
    pub detail: String,
}

/// Probes each source, for `slimbench list`.
pub fn availability(settings: &MeterSettings) -> Vec<SourceStatus> {
    let status = |source, r: Result<Box<dyn EnergyMeter>, MeterError>| match r {
        Ok(m) => SourceStatus {
            source,
            available: true,
            detail: m.method(),
        },
        Err(e) => SourceStatus {
            source,
            available: false,
            detail: e.to_string(),
        },
    };
    vec![
        status(
            "rapl",
            open_rapl(&settings.powercap_root, &settings.cpu_model),
        ),
        status("nvml", open_nvml(settings.gpus.as_deref())),
        {
            let params = settings.estimate_params();
            status(
                params.model.source().as_str(),
                EstimateMeter::open(params).map(|m| Box::new(m) as Box<dyn EnergyMeter>),
            )
        },
    ]
}
