//! The estimated-energy fallback, where no meter can be read. One formula, two sources of
//! coefficients, each labelled wherever it appears:
//!
//! CPU power = vCPUs x (min + u x (max - min)) W, u being the worker's CPU time (user + system,
//! all threads, from `getrusage`) over the window and the vCPUs; so the energy of a window of
//! `T` s holding `C` s of CPU time is `vCPUs x min x T + (max - min) x C`.
//!
//! - `estimated-vcpu`: min and max per vCPU from Cloud Carbon Footprint's SPECpower-derived table
//!   for the CPU's microarchitecture ([`super::microarch`]); the model on a virtual machine, on a
//!   CPU the TDP table does not know, and whenever `--cpu-power MIN:MAX` gives the coefficients.
//! - `estimated-tdp`: min 0 and max the CPU's TDP over its logical cores (CodeCarbon's TDP table,
//!   `data/cpu_tdp.csv`, matched on the model name); the model on bare metal with a known CPU.
//!
//! Every estimate carries a band: the same CPU time and window under the coefficients of the
//! microarchitecture and its neighbours (for the TDP model: those and the TDP's own), and RAM at
//! the low and high published per-GB figures.
//!
//! RAM: [`RAM_W_PER_GB`] watts per GB of the worker's resident memory, integrated over wall time.
//! Neither model sees the machine's own idle draw: no figure above idle exists in estimate mode.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::microarch::{self, CpuIdentity, VcpuPower};
use super::{DomainInfo, DomainKind, EnergyMeter, MeterError, Source};

/// TDP assumed when the CPU model is not in the table (CodeCarbon's default); used only to bound
/// a RAPL counter's plausible steps, never to estimate.
pub const DEFAULT_TDP_W: f64 = 85.0;
/// RAM power per GB resident: Cloud Carbon Footprint's coefficient, the mean of Crucial's and
/// Micron's figures ([`RAM_W_PER_GB_BAND`]).
pub const RAM_W_PER_GB: f64 = 0.392;
/// The published per-GB figures [`RAM_W_PER_GB`] averages: Crucial's 3 W per 8 GB and Micron's
/// DDR4 power model.
pub const RAM_W_PER_GB_BAND: (f64, f64) = (0.375, 0.4083);
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

fn current_rss_gb() -> f64 {
    crate::memory::current_rss_bytes().map_or(0.0, |b| b as f64 / 1e9)
}

/// Which coefficients an estimate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EstimateModel {
    /// Per vCPU, from Cloud Carbon Footprint's table for the microarchitecture.
    CcfVcpu,
    /// Per vCPU, given with `--cpu-power` (or the config key `cpu_power`).
    GivenVcpu,
    /// The CPU's TDP over its logical cores for a busy one, nothing for an idle one.
    Tdp,
}

impl EstimateModel {
    /// The label of the energy it gives.
    pub fn source(self) -> Source {
        match self {
            EstimateModel::Tdp => Source::EstimatedTdp,
            EstimateModel::CcfVcpu | EstimateModel::GivenVcpu => Source::EstimatedVcpu,
        }
    }
}

/// One alternative set of coefficients of the band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandMember {
    /// Where it comes from (a microarchitecture, or the TDP).
    pub name: String,
    /// Its watts per vCPU.
    pub power: VcpuPower,
}

/// The coefficients of an estimate, kept in the record so that every figure can be recomputed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimateParams {
    /// Which model.
    pub model: EstimateModel,
    /// The microarchitecture, where told.
    pub architecture: Option<String>,
    /// How the CPU was identified (cpuinfo family and model, or the flag).
    pub identified_by: String,
    /// True on a virtual machine (the `hypervisor` CPU flag).
    pub virtual_machine: bool,
    /// vCPUs charged: the machine's logical CPUs.
    pub vcpus: usize,
    /// Watts per vCPU used for the figures.
    pub power: VcpuPower,
    /// The TDP, W, for the TDP model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdp_w: Option<f64>,
    /// The other coefficients whose figures bound the estimate.
    pub band: Vec<BandMember>,
    /// RAM watts per GB resident.
    pub ram_w_per_gb: f64,
    /// The low and high RAM figures, W per GB.
    pub ram_band_w_per_gb: (f64, f64),
    /// Where the coefficients come from.
    pub citation: String,
}

impl EstimateParams {
    /// Chooses the model for a CPU: `given` coefficients if any; else on a virtual machine (or a
    /// CPU the TDP table does not know) CCF's per-vCPU coefficients of its microarchitecture (the
    /// mean of the table where unknown); else the TDP.
    pub fn choose(
        identity: &CpuIdentity,
        cpu_model: &str,
        logical_cores: usize,
        given: Option<VcpuPower>,
    ) -> Self {
        let vcpus = logical_cores.max(1);
        let architecture = identity.microarchitecture();
        let ccf = architecture
            .and_then(microarch::coefficients)
            .unwrap_or_else(microarch::unknown_average);
        let neighbours: Vec<BandMember> = microarch::band_families(architecture)
            .into_iter()
            .map(|c| BandMember {
                name: c.architecture,
                power: c.power,
            })
            .collect();
        let tdp = shipped_tdp(cpu_model);
        let base = Self {
            model: EstimateModel::CcfVcpu,
            architecture: architecture.map(str::to_string),
            identified_by: identity.describe(),
            virtual_machine: identity.virtual_machine,
            vcpus,
            power: ccf,
            tdp_w: None,
            band: neighbours.clone(),
            ram_w_per_gb: RAM_W_PER_GB,
            ram_band_w_per_gb: RAM_W_PER_GB_BAND,
            citation: format!(
                "{}; RAM: Cloud Carbon Footprint methodology",
                microarch::CCF_CITATION
            ),
        };
        if let Some(power) = given {
            return Self {
                model: EstimateModel::GivenVcpu,
                power,
                band: vec![],
                citation:
                    "--cpu-power (given by the user); RAM: Cloud Carbon Footprint methodology"
                        .to_string(),
                ..base
            };
        }
        match tdp.matched {
            Some(name) if !identity.virtual_machine => {
                let tdp_power = VcpuPower {
                    min_w: 0.0,
                    max_w: tdp.tdp_w / vcpus as f64,
                };
                let mut band = vec![BandMember {
                    name: format!("TDP {} W", tdp.tdp_w),
                    power: tdp_power,
                }];
                band.extend(neighbours);
                Self {
                    model: EstimateModel::Tdp,
                    power: tdp_power,
                    tdp_w: Some(tdp.tdp_w),
                    band,
                    citation: format!(
                        "TDP of {name:?} from cpu_tdp.csv (CodeCarbon); band: {}; RAM: Cloud Carbon Footprint methodology",
                        microarch::CCF_CITATION
                    ),
                    ..base
                }
            }
            _ => base,
        }
    }

    /// Joules of the CPU over `wall_s` seconds holding `cpu_s` seconds of CPU time, under `p`.
    pub fn cpu_energy_with(&self, p: VcpuPower, cpu_s: f64, wall_s: f64) -> f64 {
        let v = self.vcpus as f64;
        let busy = cpu_s.clamp(0.0, v * wall_s.max(0.0));
        v * p.min_w * wall_s.max(0.0) + (p.max_w - p.min_w) * busy
    }

    /// Joules of the CPU over `wall_s` seconds holding `cpu_s` seconds of CPU time.
    pub fn cpu_energy_j(&self, cpu_s: f64, wall_s: f64) -> f64 {
        self.cpu_energy_with(self.power, cpu_s, wall_s)
    }

    /// The CPU time behind `cpu_j` joules over `wall_s` seconds (the formula inverted).
    pub fn cpu_time_of(&self, cpu_j: f64, wall_s: f64) -> f64 {
        let span = self.power.max_w - self.power.min_w;
        if span <= 0.0 {
            return 0.0;
        }
        ((cpu_j - self.vcpus as f64 * self.power.min_w * wall_s) / span).max(0.0)
    }

    /// The low and high total of a window whose estimate is `cpu_j` (CPU) and `ram_j` (RAM)
    /// joules over `wall_s` seconds: the same CPU time under every coefficient of the band (and
    /// the estimate's own), RAM at the low and high per-GB figures.
    pub fn band_j(&self, cpu_j: f64, ram_j: f64, wall_s: f64) -> (f64, f64) {
        let cpu_s = self.cpu_time_of(cpu_j, wall_s);
        let cpu = self
            .band
            .iter()
            .map(|m| self.cpu_energy_with(m.power, cpu_s, wall_s))
            .chain([cpu_j]);
        let (lo, hi) = cpu.fold((f64::INFINITY, 0.0_f64), |(lo, hi), e| {
            (lo.min(e), hi.max(e))
        });
        let ram = |w: f64| ram_j * w / self.ram_w_per_gb;
        (
            lo + ram(self.ram_band_w_per_gb.0),
            hi + ram(self.ram_band_w_per_gb.1),
        )
    }

    /// The coefficients in words, for the method text.
    pub fn describe(&self) -> String {
        let arch = self
            .architecture
            .as_deref()
            .unwrap_or("unknown microarchitecture");
        let host = if self.virtual_machine {
            "a virtual machine"
        } else {
            "bare metal"
        };
        let cpu = match self.model {
            EstimateModel::Tdp => format!(
                "{} x {:.3} W per busy logical CPU (TDP {} W / {} logical CPUs)",
                self.vcpus,
                self.power.max_w,
                self.tdp_w.unwrap_or(0.0),
                self.vcpus
            ),
            _ => format!(
                "{} vCPUs x ({:.3} + u x ({:.3} - {:.3})) W, u = CPU time / (window x vCPUs)",
                self.vcpus, self.power.min_w, self.power.max_w, self.power.min_w
            ),
        };
        let band = if self.band.is_empty() {
            "no band for the CPU (coefficients given)".to_string()
        } else {
            format!(
                "band from {}",
                self.band
                    .iter()
                    .map(|m| format!("{} ({:.3}-{:.3} W)", m.name, m.power.min_w, m.power.max_w))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!(
            "estimated ({}): {arch} ({}) on {host}; CPU {cpu}; {band}; plus {} W per GB resident ({}-{}); {}",
            self.model.source().as_str(),
            self.identified_by,
            self.ram_w_per_gb,
            self.ram_band_w_per_gb.0,
            self.ram_band_w_per_gb.1,
            self.citation
        )
    }
}

/// The estimate as a meter: domains `cpu` and `ram`, labelled by the model.
pub struct EstimateMeter {
    infos: Vec<DomainInfo>,
    params: EstimateParams,
    cpu_start_s: f64,
    wall_start: Instant,
    last_wall: Instant,
    ram_j: f64,
}

impl EstimateMeter {
    /// Opens the estimate for this process with `params`.
    pub fn open(params: EstimateParams) -> Result<Self, MeterError> {
        let source = params.model.source();
        let now = Instant::now();
        Ok(Self {
            infos: vec![
                DomainInfo {
                    name: "cpu".into(),
                    kind: DomainKind::CpuEstimate,
                    source,
                },
                DomainInfo {
                    name: "ram".into(),
                    kind: DomainKind::RamEstimate,
                    source,
                },
            ],
            params,
            cpu_start_s: process_cpu_time_s()?,
            wall_start: now,
            last_wall: now,
            ram_j: 0.0,
        })
    }

    /// The coefficients used.
    pub fn params(&self) -> &EstimateParams {
        &self.params
    }
}

impl EnergyMeter for EstimateMeter {
    fn domains(&self) -> &[DomainInfo] {
        &self.infos
    }

    fn read_joules(&mut self) -> Result<Vec<f64>, MeterError> {
        let cpu_s = process_cpu_time_s()? - self.cpu_start_s;
        let now = Instant::now();
        self.ram_j += current_rss_gb()
            * self.params.ram_w_per_gb
            * now.duration_since(self.last_wall).as_secs_f64();
        self.last_wall = now;
        let wall_s = now.duration_since(self.wall_start).as_secs_f64();
        Ok(vec![self.params.cpu_energy_j(cpu_s, wall_s), self.ram_j])
    }

    fn update_period_s(&self) -> f64 {
        // CPU time is accounted at the scheduler tick on many kernels (up to 10 ms).
        0.01
    }

    fn min_poll_hz(&self) -> f64 {
        0.0
    }

    fn method(&self) -> String {
        self.params.describe()
    }

    fn estimate(&self) -> Option<EstimateParams> {
        Some(self.params.clone())
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

    fn vm(family: u32, model: u32, vendor: &str) -> CpuIdentity {
        CpuIdentity::parse(&format!(
            "vendor_id : {vendor}\ncpu family : {family}\nmodel : {model}\nflags : avx2 hypervisor\n"
        ))
    }

    /// Hand-computed: 2 vCPUs of Emerald Rapids (0.8140-4.4820 W a vCPU) over 10 s holding 15 s
    /// of CPU time (u = 0.75): 2 x 0.8140 x 10 + (4.4820 - 0.8140) x 15 = 16.280 + 55.020 J.
    #[test]
    fn the_vcpu_model_matches_hand_computed_figures_for_two_families() {
        let p = EstimateParams::choose(
            &vm(6, 207, "GenuineIntel"),
            "Intel(R) Xeon(R) Processor",
            2,
            None,
        );
        assert_eq!(p.model, EstimateModel::CcfVcpu);
        assert_eq!(p.architecture.as_deref(), Some("Emerald Rapids"));
        let e = p.cpu_energy_j(15.0, 10.0);
        assert!(
            (e - (2.0 * 0.8140104166666666 * 10.0 + (4.48203125 - 0.8140104166666666) * 15.0))
                .abs()
                < 1e-9,
            "{e}"
        );
        assert!((e - 71.30).abs() < 0.01, "{e}");
        // Band: Sapphire Rapids (1.0363-4.1605) gives 2 x 1.0363 x 10 + 3.1242 x 15 = 67.59 J,
        // Granite Rapids (0.5816-2.5275) gives 11.63 + 29.19 = 40.82 J.
        let (lo, hi) = p.band_j(e, 0.0, 10.0);
        assert!(
            (lo - 40.82).abs() < 0.01 && (hi - e).abs() < 1e-9,
            "{lo} {hi}"
        );
        // AMD EPYC 2nd Gen (Rome), 4 vCPUs, 2 s, 2 s of CPU time (u = 0.25):
        // 4 x 0.47426 x 2 + (1.69296 - 0.47426) x 2 = 3.7941 + 2.4374 = 6.2315 J.
        let rome = EstimateParams::choose(&vm(23, 49, "AuthenticAMD"), "AMD EPYC", 4, None);
        assert_eq!(rome.model.source().as_str(), "estimated-vcpu");
        assert!((rome.cpu_energy_j(2.0, 2.0) - 6.2315).abs() < 1e-3);
        // CPU time beyond what the vCPUs can hold is clamped to full load: 4 x 1.69296 x 2.
        assert!((rome.cpu_energy_j(100.0, 2.0) - 13.5437).abs() < 1e-3);
    }

    #[test]
    fn given_coefficients_override_the_table_and_carry_no_cpu_band() {
        let given = VcpuPower {
            min_w: 1.0,
            max_w: 3.0,
        };
        let p = EstimateParams::choose(&vm(6, 207, "GenuineIntel"), "x", 2, Some(given));
        assert_eq!(p.model, EstimateModel::GivenVcpu);
        // 2 x 1 x 10 + 2 x 5 = 30 J; RAM 3.92 J at 0.392 W/GB scales to 3.75 and 4.083.
        assert!((p.cpu_energy_j(5.0, 10.0) - 30.0).abs() < 1e-12);
        let (lo, hi) = p.band_j(30.0, 3.92, 10.0);
        assert!(
            (lo - 33.75).abs() < 1e-9 && (hi - 34.083).abs() < 1e-9,
            "{lo} {hi}"
        );
    }

    #[test]
    fn bare_metal_with_a_known_cpu_keeps_the_tdp_model_bounded_by_the_vcpu_one() {
        let metal = CpuIdentity::parse(
            "vendor_id : GenuineIntel\ncpu family : 6\nmodel : 85\nstepping : 7\n",
        );
        let p = EstimateParams::choose(
            &metal,
            "Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz",
            48,
            None,
        );
        assert_eq!(p.model, EstimateModel::Tdp);
        assert_eq!(p.model.source().as_str(), "estimated-tdp");
        // 205 W / 48 per busy thread: 24 s of CPU time over 1 s = 102.5 J, as before.
        let e = p.cpu_energy_j(24.0, 1.0);
        assert!((e - 102.5).abs() < 1e-9);
        let (lo, hi) = p.band_j(e, 0.0, 1.0);
        // Cascade Lake and its neighbours charge the 48 threads' idle draw too (0.69 W each):
        // 48 x 0.690 + 24 x 3.373 = 114.1 J is the band's top; the TDP's own figure its bottom.
        assert!(
            (lo - e).abs() < 1e-9 && (hi - 114.08).abs() < 0.01,
            "{lo} {hi}"
        );
        // On a VM the same CPU gets the per-vCPU model.
        let on_vm = EstimateParams::choose(
            &vm(6, 85, "GenuineIntel"),
            "Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz",
            48,
            None,
        );
        assert_eq!(on_vm.model, EstimateModel::CcfVcpu);
    }
}
