//! RAPL through Linux powercap sysfs (`/sys/class/powercap`, or a fake tree in tests).
//!
//! Zones read: every top-level `intel-rapl:N` (package zones by their `name`, `psys` as the
//! platform) and its `dram` sub-zone; `intel-rapl-mmio:N` zones only where no MSR zone of the same
//! name exists (they expose the same package counter). `core` and `uncore` sub-zones are inside
//! package energy and are never read, so nothing is counted twice. AMD processors on recent kernels
//! expose their package zones in the same tree and are read the same way.
//!
//! Counters wrap at `max_energy_range_uj`. A read lower than the previous one is a wrap when the
//! implied increment (max - previous + new) is under half the range; otherwise the counter went
//! backwards for another reason, the interval is dropped (counted, never negative energy) and the
//! counter is re-based. A forward step is implausible, and dropped the same way, when it is over
//! half the range, or (with [`RaplMeter::with_power_bound`]) when it implies a power above the
//! bound, twice the package TDP when run by `slimbench run`: a counter glitch must not invent
//! energy.

use std::path::{Path, PathBuf};

use super::{DomainInfo, DomainKind, EnergyMeter, MeterError, Source};

/// Default powercap root.
pub const DEFAULT_POWERCAP_ROOT: &str = "/sys/class/powercap";
/// Environment variable that overrides the powercap root.
pub const POWERCAP_ROOT_ENV: &str = "SLIMBENCH_POWERCAP_ROOT";

/// How to grant read access to `energy_uj`, shown when it is unreadable.
pub const PERMISSION_HINT: &str = "since Linux 5.10 energy_uj is readable by root only. Run slimbench \
as root, or grant read access for this boot with `sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj \
/sys/class/powercap/intel-rapl:*/*/energy_uj` (a udev rule or systemd-tmpfiles entry makes it last), \
or choose `--energy estimate`";

struct Zone {
    info: DomainInfo,
    energy_file: PathBuf,
    max_range_uj: u64,
    last_uj: u64,
    total_uj: u128,
}

/// A RAPL meter over the zones of one powercap tree.
pub struct RaplMeter {
    zones: Vec<Zone>,
    infos: Vec<DomainInfo>,
    dropped: u64,
    intervals: u64,
    power_bound_w: Option<f64>,
    last_read: std::time::Instant,
}

/// The shortest interval a step's power is computed over: RAPL counters update about every
/// millisecond, so two reads closer than that can straddle one whole update.
const MIN_POWER_INTERVAL_S: f64 = 0.001;

/// The meter error for an I/O error reading `path`: permission problems get the how-to-fix hint.
pub fn read_error(path: &Path, e: std::io::Error) -> MeterError {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => MeterError::PermissionDenied {
            path: path.display().to_string(),
            hint: PERMISSION_HINT.to_string(),
        },
        _ => MeterError::Read(format!("cannot read {}: {e}", path.display())),
    }
}

fn read_trimmed(path: &Path) -> Result<String, MeterError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| read_error(path, e))
}

fn read_counter(path: &Path) -> Result<u64, MeterError> {
    let text = read_trimmed(path)?;
    text.parse().map_err(|_| MeterError::Garbage {
        path: path.display().to_string(),
        content: text,
    })
}

/// A zone folder found in the tree: its path and `name`.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneDir {
    /// The zone's folder.
    pub path: PathBuf,
    /// Its `name` file's content.
    pub name: String,
    /// True for `intel-rapl-mmio:*` zones.
    pub mmio: bool,
}

fn zone_index(file_name: &str, prefix: &str) -> Option<Vec<u32>> {
    let rest = file_name.strip_prefix(prefix)?;
    rest.split(':').map(|p| p.parse().ok()).collect()
}

/// Lists the top-level zones and their sub-zones under `root`, sorted by path.
pub fn discover(root: &Path) -> Result<Vec<ZoneDir>, MeterError> {
    let entries = std::fs::read_dir(root).map_err(|e| {
        MeterError::Unavailable(format!(
            "no powercap tree at {} ({e}); RAPL needs Linux with the intel_rapl (or AMD) powercap driver, not a VM",
            root.display()
        ))
    })?;
    let mut zones = Vec::new();
    let mut top: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .map(|n| {
                    zone_index(n, "intel-rapl:").is_some_and(|i| i.len() == 1)
                        || zone_index(n, "intel-rapl-mmio:").is_some_and(|i| i.len() == 1)
                })
                .unwrap_or(false)
        })
        .collect();
    top.sort();
    for dir in top {
        let mmio = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("intel-rapl-mmio:"));
        let name = read_trimmed(&dir.join("name"))?;
        zones.push(ZoneDir {
            path: dir.clone(),
            name,
            mmio,
        });
        let mut subs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| MeterError::Read(format!("cannot list {}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && p.join("energy_uj").exists())
            .collect();
        subs.sort();
        for sub in subs {
            let name = read_trimmed(&sub.join("name"))?;
            zones.push(ZoneDir {
                path: sub,
                name,
                mmio,
            });
        }
    }
    if zones.is_empty() {
        return Err(MeterError::Unavailable(format!(
            "powercap tree at {} has no intel-rapl zones",
            root.display()
        )));
    }
    Ok(zones)
}

impl RaplMeter {
    /// Opens every package, dram and psys zone under `root`; fails with what was found and how to
    /// fix it when nothing is readable.
    pub fn open(root: &Path) -> Result<Self, MeterError> {
        let found = discover(root)?;
        let msr_names: Vec<&str> = found
            .iter()
            .filter(|z| !z.mmio)
            .map(|z| z.name.as_str())
            .collect();
        let mut zones = Vec::new();
        let mut dram_count = 0;
        for z in &found {
            let kind = if z.name.starts_with("package") {
                DomainKind::CpuPackage
            } else if z.name == "dram" {
                DomainKind::Dram
            } else if z.name == "psys" {
                DomainKind::Platform
            } else {
                continue; // core, uncore: already inside package energy
            };
            if z.mmio && msr_names.contains(&z.name.as_str()) {
                continue; // the same package counter through MMIO
            }
            let name = if kind == DomainKind::Dram {
                // dram sub-zones share one name; number them by their package.
                let n = format!("dram-{dram_count}");
                dram_count += 1;
                n
            } else {
                z.name.clone()
            };
            let energy_file = z.path.join("energy_uj");
            let max_range_uj = read_counter(&z.path.join("max_energy_range_uj"))?;
            let last_uj = read_counter(&energy_file)?;
            zones.push(Zone {
                info: DomainInfo {
                    name,
                    kind,
                    source: Source::Rapl,
                },
                energy_file,
                max_range_uj,
                last_uj,
                total_uj: 0,
            });
        }
        if zones.is_empty() {
            return Err(MeterError::Unavailable(format!(
                "powercap tree at {} has no package, dram or psys zone",
                root.display()
            )));
        }
        let infos = zones.iter().map(|z| z.info.clone()).collect();
        Ok(Self {
            zones,
            infos,
            dropped: 0,
            intervals: 0,
            power_bound_w: None,
            last_read: std::time::Instant::now(),
        })
    }

    /// Drops any interval whose step implies more than `watts` in one zone (a physical bound,
    /// such as twice the package TDP).
    pub fn with_power_bound(mut self, watts: f64) -> Self {
        self.power_bound_w = Some(watts).filter(|w| w.is_finite() && *w > 0.0);
        self
    }
}

/// The increment from `last` to `now` of a counter that wraps at `max_range`; `None` when `now`
/// is below `last` by more than a plausible wrap (over half the range in one interval).
pub fn wrapped_delta(last: u64, now: u64, max_range: u64) -> Option<u64> {
    let delta = if now >= last {
        now - last
    } else {
        max_range.checked_sub(last)?.checked_add(now)?
    };
    // More than half the range in one interval is no plausible step, forward or through a wrap.
    (delta < max_range / 2 || max_range == 0).then_some(delta)
}

impl EnergyMeter for RaplMeter {
    fn domains(&self) -> &[DomainInfo] {
        &self.infos
    }

    fn read_joules(&mut self) -> Result<Vec<f64>, MeterError> {
        let now_t = std::time::Instant::now();
        let dt = now_t
            .duration_since(self.last_read)
            .as_secs_f64()
            .max(MIN_POWER_INTERVAL_S);
        self.last_read = now_t;
        self.intervals += 1;
        let mut dropped = false;
        let mut out = Vec::with_capacity(self.zones.len());
        for zone in &mut self.zones {
            let now = read_counter(&zone.energy_file)?;
            let plausible = wrapped_delta(zone.last_uj, now, zone.max_range_uj).filter(|&d| {
                self.power_bound_w
                    .is_none_or(|bound| d as f64 / 1e6 / dt <= bound)
            });
            match plausible {
                Some(delta) => zone.total_uj += u128::from(delta),
                None => dropped = true,
            }
            zone.last_uj = now;
            out.push(zone.total_uj as f64 / 1e6);
        }
        if dropped {
            self.dropped += 1;
        }
        Ok(out)
    }

    fn intervals(&self) -> u64 {
        self.intervals
    }

    fn update_period_s(&self) -> f64 {
        0.001
    }

    fn min_poll_hz(&self) -> f64 {
        1.0
    }

    fn dropped_samples(&self) -> u64 {
        self.dropped
    }

    fn method(&self) -> String {
        let names: Vec<&str> = self.infos.iter().map(|d| d.name.as_str()).collect();
        format!(
            "RAPL energy counters through powercap sysfs ({}), wrap-corrected",
            names.join(", ")
        )
    }
}

/// The powercap root from `flag`, else `SLIMBENCH_POWERCAP_ROOT`, else the default.
pub fn powercap_root(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os(POWERCAP_ROOT_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_POWERCAP_ROOT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_is_corrected_and_backwards_is_refused() {
        assert_eq!(wrapped_delta(10, 25, 100), Some(15));
        assert_eq!(wrapped_delta(95, 5, 100), Some(10));
        assert_eq!(wrapped_delta(u64::MAX - 1, 3, u64::MAX), Some(4));
        assert_eq!(
            wrapped_delta(60, 10, 100),
            None,
            "a 50-unit jump back is no wrap"
        );
    }
}
