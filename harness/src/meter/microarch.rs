//! Which CPU microarchitecture this is, and Cloud Carbon Footprint's watts per vCPU for it.
//!
//! The microarchitecture is read from `/proc/cpuinfo`'s vendor, family, model and stepping (a
//! cloud VM often hides the model name, never these), and looked up in
//! `data/ccf_cpu_coefficients.csv`: CCF's SPECpower_ssj2008-derived watts per hardware thread at
//! 0% and 100% utilisation (provenance in `data/PROVENANCE.md`).

use serde::{Deserialize, Serialize};

/// The shipped coefficients: `architecture,min_w_per_vcpu,max_w_per_vcpu,gb_per_chip`.
pub const CCF_COEFFICIENTS_CSV: &str = include_str!("../../data/ccf_cpu_coefficients.csv");

/// Where the coefficients come from, for every method text and the report.
pub const CCF_CITATION: &str = "Cloud Carbon Footprint coefficients (ccf-coefficients, coefficients-aws-use.csv, from SPECpower_ssj2008)";

/// The microarchitectures of each line, oldest first: a family's neighbours give the estimate's
/// band.
const LINES: &[&[&str]] = &[
    &[
        "Sandy Bridge",
        "Ivy Bridge",
        "Haswell",
        "Broadwell",
        "Skylake",
        "Cascade Lake",
        "Ice Lake",
        "Sapphire Rapids",
        "Emerald Rapids",
        "Granite Rapids",
    ],
    &[
        "EPYC 1st Gen",
        "EPYC 2nd Gen",
        "EPYC 3rd Gen",
        "EPYC 4th Gen",
        "EPYC 5th Gen",
    ],
    &["Graviton2", "Graviton3", "Graviton4"],
    &["Coffee Lake"],
];

/// What `/proc/cpuinfo` says of the first CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuIdentity {
    /// `GenuineIntel`, `AuthenticAMD`, or empty.
    pub vendor: String,
    /// `cpu family`.
    pub family: Option<u32>,
    /// `model`.
    pub model: Option<u32>,
    /// `stepping`.
    pub stepping: Option<u32>,
    /// ARM's `CPU part` (0xd0c: Neoverse N1, ...).
    pub arm_part: Option<u32>,
    /// True when the `hypervisor` flag is set: a virtual machine.
    pub virtual_machine: bool,
}

fn number(value: &str) -> Option<u32> {
    let v = value.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

impl CpuIdentity {
    /// Parses the first processor's block of `/proc/cpuinfo` text.
    pub fn parse(cpuinfo: &str) -> Self {
        let mut id = Self::default();
        for line in cpuinfo.lines() {
            if line.trim().is_empty() && id.vendor_or_part_known() {
                break;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            match key.trim() {
                "vendor_id" => id.vendor = value.trim().to_string(),
                "cpu family" => id.family = number(value),
                "model" => id.model = number(value),
                "stepping" => id.stepping = number(value),
                "CPU part" => id.arm_part = number(value),
                "flags" | "Features" => {
                    id.virtual_machine |= value.split_whitespace().any(|f| f == "hypervisor")
                }
                _ => {}
            }
        }
        id
    }

    fn vendor_or_part_known(&self) -> bool {
        !self.vendor.is_empty() || self.arm_part.is_some()
    }

    /// This machine's, from `/proc/cpuinfo` (empty where it cannot be read).
    pub fn detect() -> Self {
        std::fs::read_to_string("/proc/cpuinfo")
            .map(|t| Self::parse(&t))
            .unwrap_or_default()
    }

    /// The microarchitecture's name as CCF's table spells it, where known.
    pub fn microarchitecture(&self) -> Option<&'static str> {
        let arm = match self.arm_part {
            Some(0xd0c) => Some("Graviton2"),
            Some(0xd40) => Some("Graviton3"),
            Some(0xd4f) => Some("Graviton4"),
            _ => None,
        };
        let (Some(family), model) = (self.family, self.model.unwrap_or(u32::MAX)) else {
            return arm;
        };
        match (self.vendor.as_str(), family) {
            ("GenuineIntel", 6) => intel(model, self.stepping.unwrap_or(0)),
            ("AuthenticAMD" | "HygonGenuine", 0x17) if model < 0x30 => Some("EPYC 1st Gen"),
            ("AuthenticAMD", 0x17) => Some("EPYC 2nd Gen"),
            ("AuthenticAMD", 0x19) => Some(match model {
                0x10..=0x1f | 0x60..=0x7f | 0xa0..=0xaf => "EPYC 4th Gen",
                _ => "EPYC 3rd Gen",
            }),
            ("AuthenticAMD", 0x1a) => Some("EPYC 5th Gen"),
            _ => None,
        }
        .or(arm)
    }

    /// How the microarchitecture was told, for the record.
    pub fn describe(&self) -> String {
        match (self.family, self.model, self.arm_part) {
            (Some(f), Some(m), _) => format!(
                "cpuinfo {} family {f} model {m} stepping {}",
                self.vendor,
                self.stepping.unwrap_or(0)
            ),
            (_, _, Some(p)) => format!("cpuinfo CPU part {p:#x}"),
            _ => "cpuinfo without family and model".to_string(),
        }
    }
}

/// Intel family 6 model numbers (Intel's SDM, Vol. 4, table 2-1, and Linux's `intel-family.h`).
fn intel(model: u32, stepping: u32) -> Option<&'static str> {
    Some(match model {
        0x2a | 0x2d => "Sandy Bridge",
        0x3a | 0x3e => "Ivy Bridge",
        0x3c | 0x3f | 0x45 | 0x46 => "Haswell",
        0x3d | 0x47 | 0x4f | 0x56 => "Broadwell",
        // Cascade Lake (and Cooper Lake) share Skylake-SP's model number from stepping 5.
        0x55 if stepping >= 5 => "Cascade Lake",
        0x4e | 0x5e | 0x55 => "Skylake",
        0x8e | 0x9e | 0xa5 | 0xa6 => "Coffee Lake",
        0x6a | 0x6c | 0x7d | 0x7e => "Ice Lake",
        0x8f => "Sapphire Rapids",
        0xcf => "Emerald Rapids",
        0xad | 0xae => "Granite Rapids",
        _ => return None,
    })
}

/// Watts per vCPU at 0% and 100% utilisation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VcpuPower {
    /// At 0% utilisation, W per vCPU.
    pub min_w: f64,
    /// At 100% utilisation, W per vCPU.
    pub max_w: f64,
}

impl VcpuPower {
    /// Watts per vCPU at `utilisation` (0..1): `min + u x (max - min)`.
    pub fn at(&self, utilisation: f64) -> f64 {
        self.min_w + utilisation.clamp(0.0, 1.0) * (self.max_w - self.min_w)
    }
}

/// One row of the shipped table.
#[derive(Debug, Clone, PartialEq)]
pub struct Coefficients {
    /// CCF's name of the microarchitecture.
    pub architecture: String,
    /// Its watts per vCPU.
    pub power: VcpuPower,
}

/// The shipped table, in file order. Rows that do not parse are a build defect, caught by tests.
pub fn table() -> Vec<Coefficients> {
    let mut reader = csv::Reader::from_reader(CCF_COEFFICIENTS_CSV.as_bytes());
    reader
        .records()
        .flatten()
        .filter_map(|row| {
            Some(Coefficients {
                architecture: row.get(0)?.to_string(),
                power: VcpuPower {
                    min_w: row.get(1)?.trim().parse().ok()?,
                    max_w: row.get(2)?.trim().parse().ok()?,
                },
            })
        })
        .collect()
}

/// The coefficients of `architecture`, if the table has it.
pub fn coefficients(architecture: &str) -> Option<VcpuPower> {
    table()
        .into_iter()
        .find(|c| c.architecture == architecture)
        .map(|c| c.power)
}

/// CCF's rule for an unknown microarchitecture: the mean of every row's min and max.
pub fn unknown_average() -> VcpuPower {
    let rows = table();
    let n = rows.len().max(1) as f64;
    VcpuPower {
        min_w: rows.iter().map(|c| c.power.min_w).sum::<f64>() / n,
        max_w: rows.iter().map(|c| c.power.max_w).sum::<f64>() / n,
    }
}

/// The families whose coefficients bound the estimate of `architecture`: itself and its
/// neighbours in its line (the generation before and after); every row for an unknown one.
pub fn band_families(architecture: Option<&str>) -> Vec<Coefficients> {
    let rows = table();
    let Some(arch) = architecture else {
        return rows;
    };
    let names: Vec<&str> = LINES
        .iter()
        .find_map(|line| {
            let i = line.iter().position(|n| *n == arch)?;
            Some(line[i.saturating_sub(1)..(i + 2).min(line.len())].to_vec())
        })
        .unwrap_or_else(|| vec![arch]);
    rows.into_iter()
        .filter(|c| names.contains(&c.architecture.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const THIS_VM: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 207\nmodel name\t: Intel(R) Xeon(R) Processor\nstepping\t: 2\nflags\t\t: fpu avx2 hypervisor avx512f\n\nprocessor\t: 1\n";

    #[test]
    fn the_microarchitecture_comes_from_family_and_model() {
        let id = CpuIdentity::parse(THIS_VM);
        assert!(id.virtual_machine);
        assert_eq!(id.microarchitecture(), Some("Emerald Rapids"));
        let zen5 = CpuIdentity::parse("vendor_id : AuthenticAMD\ncpu family : 26\nmodel : 2\n");
        assert_eq!(zen5.microarchitecture(), Some("EPYC 5th Gen"));
        assert!(!zen5.virtual_machine);
        let rome = CpuIdentity::parse("vendor_id : AuthenticAMD\ncpu family : 23\nmodel : 49\n");
        assert_eq!(rome.microarchitecture(), Some("EPYC 2nd Gen"));
        let milan = CpuIdentity::parse("vendor_id : AuthenticAMD\ncpu family : 25\nmodel : 1\n");
        assert_eq!(milan.microarchitecture(), Some("EPYC 3rd Gen"));
        let cascade = CpuIdentity::parse(
            "vendor_id : GenuineIntel\ncpu family : 6\nmodel : 85\nstepping : 7\n",
        );
        assert_eq!(cascade.microarchitecture(), Some("Cascade Lake"));
        let graviton2 = CpuIdentity::parse("CPU implementer : 0x41\nCPU part : 0xd0c\n");
        assert_eq!(graviton2.microarchitecture(), Some("Graviton2"));
        assert_eq!(CpuIdentity::parse("").microarchitecture(), None);
    }

    #[test]
    fn every_row_of_the_shipped_table_parses_and_every_line_names_rows_of_it() {
        let rows = table();
        assert_eq!(rows.len(), 20);
        for r in &rows {
            assert!(
                r.power.min_w > 0.0 && r.power.max_w > r.power.min_w,
                "{r:?}"
            );
        }
        for name in LINES.iter().flat_map(|l| l.iter()) {
            assert!(coefficients(name).is_some(), "{name} not in the table");
        }
    }

    #[test]
    fn the_band_is_the_family_and_its_neighbours() {
        let names = |a| {
            band_families(a)
                .into_iter()
                .map(|c| c.architecture)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(Some("Emerald Rapids")),
            ["Emerald Rapids", "Granite Rapids", "Sapphire Rapids"]
        );
        assert_eq!(
            names(Some("EPYC 1st Gen")),
            ["EPYC 1st Gen", "EPYC 2nd Gen"]
        );
        assert_eq!(names(None).len(), 20);
    }
}
