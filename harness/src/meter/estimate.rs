//! The estimated-energy fallback, labelled `estimated-tdp` wherever it appears.
//!
//! CPU: the worker's CPU time (user + system, all threads, from `getrusage`) times a per-thread
//! power, the CPU's TDP divided by its logical cores: a core kept busy is assumed to draw its share
//! of TDP. The TDP comes from `data/cpu_tdp.csv` (CodeCarbon's table), matched on the CPU model
//! string; an unknown model uses [`DEFAULT_TDP_W`], and the record says so.
//!
//! RAM: [`RAM_W_PER_GIB`] watts per GiB of the worker's resident memory, integrated over wall time
//! (CodeCarbon's former rule of 3 W per 8 GB, applied to the memory this process holds).
//!
//! Idle power is ~0 for the CPU part by construction (a sleeping process uses no CPU time): the
//! estimate cannot see the machine's own idle draw.

use std::time::Instant;

use super::{DomainInfo, DomainKind, EnergyMeter, MeterError, Source};

/// TDP assumed when the CPU model is not in the table (CodeCarbon's default).
pub const DEFAULT_TDP_W: f64 = 85.0;
/// RAM power per GiB resident.
pub const RAM_W_PER_GIB: f64 = 0.375;
/// The embedded TDP table: `Name,TDP` per line.
pub const CPU_TDP_CSV: &str = include_str!("../../data/cpu_tdp.csv");

/// The TDP used for a CPU and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct TdpLookup {
    /// Watts.
    pub tdp_w: f64,
    /// The table entry matched, or `None` when the default was used.
    pub matched: Option<String>,
}

fn normalise(name: &str) -> String {
    let lower = name.to_lowercase();
    let cut = lower.split('@').next().unwrap_or("");
    let cleaned = cut
        .replace("(r)", " ")
        .replace("(tm)", " ")
        .replace(['®', '™', ','], " ");
    cleaned
        .split_whitespace()
        .filter(|w| {
            !matches!(*w, "cpu" | "processor") && !w.ends_with("-core") && !w.ends_with("-cores")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn contains_tokens(haystack: &[&str], needle: &[&str]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// [`lookup_tdp`] in the shipped table ([`CPU_TDP_CSV`]), remembered per CPU model: the report's
/// exporters ask once per cell, and the table has about 4,900 rows.
pub fn shipped_tdp(cpu_model: &str) -> TdpLookup {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashMap<String, TdpLookup>>> = OnceLock::new();
    let seen = SEEN.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(found) = seen.lock().ok().and_then(|m| m.get(cpu_model).cloned()) {
        return found;
    }
    let found = lookup_tdp(cpu_model, CPU_TDP_CSV);
    if let Ok(mut m) = seen.lock() {
        m.insert(cpu_model.to_string(), found.clone());
    }
    found
}

/// Finds the TDP of `cpu_model` in `table` (CSV `Name,TDP`): an exact match after normalising
/// (case, (R)/(TM), "CPU", the clock after '@'), else the longest table name that occurs in the
/// model string as whole words and names a model number (has a digit); else the default.
pub fn lookup_tdp(cpu_model: &str, table: &str) -> TdpLookup {
    let wanted = normalise(cpu_model);
    let wanted_tokens: Vec<&str> = wanted.split_whitespace().collect();
    let mut best: Option<(usize, String, f64)> = None;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(table.as_bytes());
    for row in reader.records().flatten() {
        let (Some(name), Some(tdp)) = (row.get(0), row.get(1)) else {
            continue;
        };
        let Ok(tdp) = tdp.trim().parse::<f64>() else {
            continue;
        };
        let norm = normalise(name);
        if norm == wanted {
            return TdpLookup {
                tdp_w: tdp,
                matched: Some(name.to_string()),
            };
        }
        let tokens: Vec<&str> = norm.split_whitespace().collect();
        if norm.chars().any(|c| c.is_ascii_digit())
            && contains_tokens(&wanted_tokens, &tokens)
            && best.as_ref().is_none_or(|(len, _, _)| norm.len() > *len)
        {
            best = Some((norm.len(), name.to_string(), tdp));
        }
    }
    match best {
        Some((_, name, tdp)) => TdpLookup {
            tdp_w: tdp,
            matched: Some(name),
        },
        None => TdpLookup {
            tdp_w: DEFAULT_TDP_W,
            matched: None,
        },
    }
}

/// Estimated CPU energy in joules of `cpu_time_s` seconds of CPU time on a CPU of `tdp_w` watts
/// with `logical_cores` hardware threads.
pub fn cpu_energy_j(cpu_time_s: f64, tdp_w: f64, logical_cores: usize) -> f64 {
    cpu_time_s * tdp_w / logical_cores.max(1) as f64
}

/// Estimated RAM energy in joules of holding `resident_gib` GiB for `seconds`.
pub fn ram_energy_j(resident_gib: f64, seconds: f64) -> f64 {
    resident_gib * RAM_W_PER_GIB * seconds
}

/// CPU time (user + system) of this process so far, in seconds.
pub fn process_cpu_time_s() -> Result<f64, MeterError> {
    // SAFETY: `rusage` is plain integers, for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return Err(MeterError::Read(format!(
            "getrusage failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(secs(usage.ru_utime) + secs(usage.ru_stime))
}

fn current_rss_gib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kib| kib / (1024.0 * 1024.0))
        .unwrap_or(0.0)
}

/// The estimate as a meter: domains `cpu` and `ram`, both `estimated-tdp`.
pub struct EstimateMeter {
    infos: Vec<DomainInfo>,
    tdp: TdpLookup,
    cpu_model: String,
    logical_cores: usize,
    cpu_start_s: f64,
    last_wall: Instant,
    ram_j: f64,
}

impl EstimateMeter {
    /// Opens the estimate for this process on a CPU named `cpu_model` with `logical_cores` threads.
    pub fn open(cpu_model: &str, logical_cores: usize) -> Result<Self, MeterError> {
        Ok(Self {
            infos: vec![
                DomainInfo {
                    name: "cpu".into(),
                    kind: DomainKind::CpuEstimate,
                    source: Source::EstimatedTdp,
                },
                DomainInfo {
                    name: "ram".into(),
                    kind: DomainKind::RamEstimate,
                    source: Source::EstimatedTdp,
                },
            ],
            tdp: shipped_tdp(cpu_model),
            cpu_model: cpu_model.to_string(),
            logical_cores,
            cpu_start_s: process_cpu_time_s()?,
            last_wall: Instant::now(),
            ram_j: 0.0,
        })
    }

    /// The TDP used.
    pub fn tdp(&self) -> &TdpLookup {
        &self.tdp
    }
}

impl EnergyMeter for EstimateMeter {
    fn domains(&self) -> &[DomainInfo] {
        &self.infos
    }

    fn read_joules(&mut self) -> Result<Vec<f64>, MeterError> {
        let cpu_s = process_cpu_time_s()? - self.cpu_start_s;
        let now = Instant::now();
        self.ram_j += ram_energy_j(
            current_rss_gib(),
            now.duration_since(self.last_wall).as_secs_f64(),
        );
        self.last_wall = now;
        Ok(vec![
            cpu_energy_j(cpu_s, self.tdp.tdp_w, self.logical_cores),
            self.ram_j,
        ])
    }

    fn update_period_s(&self) -> f64 {
        // CPU time is accounted at the scheduler tick on many kernels (up to 10 ms).
        0.01
    }

    fn min_poll_hz(&self) -> f64 {
        0.0
    }

    fn method(&self) -> String {
        let tdp = match &self.tdp.matched {
            Some(name) => format!("TDP {} W of {name:?} from cpu_tdp.csv", self.tdp.tdp_w),
            None => format!(
                "TDP {} W default: CPU model {:?} not in cpu_tdp.csv",
                self.tdp.tdp_w, self.cpu_model
            ),
        };
        format!(
            "estimated: process CPU time x {tdp} / {} logical cores, plus {RAM_W_PER_GIB} W per GiB resident",
            self.logical_cores
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tdp_matches_model_strings_as_the_os_writes_them() {
        let l = lookup_tdp("Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz", CPU_TDP_CSV);
        assert_eq!(l.tdp_w, 205.0);
        assert_eq!(l.matched.as_deref(), Some("Intel Xeon Gold 6248R"));
        let l = lookup_tdp("Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz", CPU_TDP_CSV);
        assert_eq!(l.tdp_w, 95.0);
        let l = lookup_tdp("AMD EPYC 7262 8-Core Processor", CPU_TDP_CSV);
        assert_eq!(l.tdp_w, 155.0);
    }

    #[test]
    fn unknown_cpu_uses_the_documented_default() {
        let l = lookup_tdp("AMD EPYC", CPU_TDP_CSV);
        assert_eq!(l.tdp_w, DEFAULT_TDP_W);
        assert!(l.matched.is_none());
    }

    #[test]
    fn estimate_is_deterministic_for_cpu_time_and_tdp() {
        assert_eq!(cpu_energy_j(2.0, 80.0, 8), 20.0);
        assert_eq!(cpu_energy_j(2.0, 80.0, 8), cpu_energy_j(2.0, 80.0, 8));
        assert_eq!(ram_energy_j(2.0, 10.0), 7.5);
    }
}
