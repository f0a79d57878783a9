//! What else the machine was doing while a round was timed: time stolen by the hypervisor (the
//! 8th figure of `/proc/stat`'s `cpu` line), CPU time of other processes (the machine's busy time
//! minus the worker's own), the worker's involuntary context switches (`getrusage`), and the CPU
//! clock where `cpufreq` exposes it. A round past [`STEAL_LIMIT`] or [`OTHER_CPU_LIMIT`] is
//! `disturbed`, and the parent measures it again (`--disturbed-retries`, default
//! [`DEFAULT_RETRIES`] times).

use serde::{Deserialize, Serialize};

/// Share of the machine's CPU time stolen by the hypervisor above which a round is disturbed.
pub const STEAL_LIMIT: f64 = 0.05;
/// Share of the machine's CPU time used by other processes above which a round is disturbed (a
/// busy loop on one of two cores is 0.5; this VM's background stays under 0.03).
pub const OTHER_CPU_LIMIT: f64 = 0.15;
/// How many times a disturbed round is measured again before its last measurement is kept, when
/// `--disturbed-retries` does not say.
pub const DEFAULT_RETRIES: usize = 2;

/// The machine's state over a timed window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interference {
    /// Share of all CPUs' time stolen by the hypervisor (0..1).
    pub steal_share: f64,
    /// Share of all CPUs' time used by other processes than the worker (0..1).
    pub other_cpu_share: f64,
    /// The worker's involuntary context switches.
    pub involuntary_switches: u64,
    /// Mean current clock of the CPUs at the window's end, MHz, where readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_mhz: Option<f64>,
    /// Past [`STEAL_LIMIT`] or [`OTHER_CPU_LIMIT`].
    pub disturbed: bool,
}

/// `/proc/stat`'s aggregate `cpu` line: busy, steal and total ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// user + nice + system + irq + softirq (steal apart).
    pub busy: u64,
    /// Stolen by the hypervisor.
    pub steal: u64,
    /// Every field but guest time (already counted in user).
    pub total: u64,
}

/// The aggregate `cpu` line of a `/proc/stat` text.
pub fn parse_proc_stat(text: &str) -> Option<CpuTicks> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal guest guest_nice
    Some(CpuTicks {
        busy: get(0) + get(1) + get(2) + get(5) + get(6),
        steal: get(7),
        total: (0..8).map(get).sum(),
    })
}

fn cpu_ticks() -> Option<CpuTicks> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// This process's CPU time (user + system), s, and involuntary context switches.
fn own_usage() -> Option<(f64, u64)> {
    // SAFETY: getrusage writes into the zeroed struct it is given and reads nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to an owned rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some((secs(u.ru_utime) + secs(u.ru_stime), u.ru_nivcsw as u64))
}

/// Scheduler ticks a second (`_SC_CLK_TCK`).
fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// Mean `scaling_cur_freq` of the CPUs, MHz; `None` where cpufreq is not exposed (most VMs).
fn cpu_mhz() -> Option<f64> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu").ok()?;
    let khz: Vec<f64> = dir
        .flatten()
        .filter_map(|e| {
            std::fs::read_to_string(e.path().join("cpufreq/scaling_cur_freq"))
                .ok()?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .collect();
    (!khz.is_empty()).then(|| khz.iter().sum::<f64>() / khz.len() as f64 / 1e3)
}

/// Started at a window's start, finished at its end.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    ticks: Option<CpuTicks>,
    own: Option<(f64, u64)>,
}

impl Probe {
    /// Reads the counters now.
    pub fn start() -> Self {
        Self {
            ticks: cpu_ticks(),
            own: own_usage(),
        }
    }

    /// The interference since [`Probe::start`]; `None` where `/proc/stat` or `getrusage` cannot
    /// be read.
    pub fn finish(self) -> Option<Interference> {
        let (t0, (cpu0, sw0)) = (self.ticks?, self.own?);
        let (t1, (cpu1, sw1)) = (cpu_ticks()?, own_usage()?);
        Some(judge(
            t0,
            t1,
            cpu1 - cpu0,
            sw1.saturating_sub(sw0),
            ticks_per_s(),
            cpu_mhz(),
        ))
    }
}

/// The interference between two `/proc/stat` readings, given the worker's own CPU time over the
/// same span (s) and its involuntary switches.
pub fn judge(
    t0: CpuTicks,
    t1: CpuTicks,
    own_cpu_s: f64,
    involuntary_switches: u64,
    ticks_per_s: f64,
    cpu_mhz: Option<f64>,
) -> Interference {
    let total = t1.total.saturating_sub(t0.total) as f64;
    let share = |ticks: f64| {
        if total > 0.0 {
            (ticks / total).clamp(0.0, 1.0)
        } else {
            0.0
        }
    };
    let steal_share = share(t1.steal.saturating_sub(t0.steal) as f64);
    let busy = t1.busy.saturating_sub(t0.busy) as f64;
    let other_cpu_share = share((busy - own_cpu_s * ticks_per_s).max(0.0));
    Interference {
        steal_share,
        other_cpu_share,
        involuntary_switches,
        cpu_mhz,
        disturbed: steal_share > STEAL_LIMIT || other_cpu_share > OTHER_CPU_LIMIT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_and_other_processes_come_from_proc_stat() {
        let a = parse_proc_stat("cpu  100 0 50 1000 0 0 0 10 0 0\ncpu0 1 2 3\n").unwrap();
        assert_eq!(
            a,
            CpuTicks {
                busy: 150,
                steal: 10,
                total: 1160
            }
        );
        // 200 ticks later on 2 CPUs: the worker used 1 s (100 ticks) of 150 busy, 10 stolen.
        let b = CpuTicks {
            busy: 300,
            steal: 20,
            total: 1360,
        };
        let i = judge(a, b, 1.0, 3, 100.0, None);
        assert!((i.steal_share - 0.05).abs() < 1e-12);
        assert!((i.other_cpu_share - 0.25).abs() < 1e-12);
        assert!(i.disturbed);
        let quiet = judge(
            a,
            CpuTicks {
                busy: 250,
                steal: 11,
                total: 1360,
            },
            1.0,
            0,
            100.0,
            None,
        );
        assert!(!quiet.disturbed, "{quiet:?}");
        assert!(parse_proc_stat("intr 1 2\n").is_none());
    }

    #[test]
    fn this_machine_can_be_probed() {
        if let Some(i) = Probe::start().finish() {
            assert!((0.0..=1.0).contains(&i.steal_share));
            assert!((0.0..=1.0).contains(&i.other_cpu_share));
        }
    }
}
