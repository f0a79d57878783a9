//! Facts about the machine that every record carries.

use serde::{Deserialize, Serialize};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// The host a cell ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    /// CPU model string as the OS reports it.
    pub cpu_model: String,
    /// Logical cores (hardware threads).
    pub logical_cores: usize,
    /// Physical cores, where known.
    pub physical_cores: Option<usize>,
    /// Operating system name and version.
    pub os: String,
    /// Total memory in bytes.
    pub total_memory_bytes: u64,
}

#[cfg(test)]
impl HostInfo {
    /// A made-up host for unit tests: 2 cores, 1 GiB.
    pub(crate) fn fixture() -> Self {
        Self {
            cpu_model: "test".into(),
            logical_cores: 2,
            physical_cores: Some(2),
            os: "test".into(),
            total_memory_bytes: 1 << 30,
        }
    }
}

impl HostInfo {
    /// Reads the host's facts through sysinfo.
    pub fn detect() -> Self {
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        let cpu_model = sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_string())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "unknown".to_string());
        Self {
            cpu_model,
            logical_cores: sys.cpus().len().max(1),
            physical_cores: sys.physical_core_count(),
            os: System::long_os_version().unwrap_or_else(|| std::env::consts::OS.to_string()),
            total_memory_bytes: sys.total_memory(),
        }
    }
}
