//! The energy part of a record, computed from a meter's samples around the idle and timed windows.

use serde::{Deserialize, Serialize};

use super::sampler::Sample;
use super::{DomainInfo, DomainKind, Source};

/// Energy and power of one domain over the timed window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEnergy {
    /// Domain name (`package-0`, `gpu-0`, `cpu`, ...).
    pub name: String,
    /// What it covers.
    pub kind: DomainKind,
    /// Where the figures come from.
    pub source: Source,
    /// Energy over the window, J.
    pub energy_j: f64,
    /// Power measured in the idle window just before, W; `None` where the domain is estimated
    /// (an estimate cannot see idle draw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_power_w: Option<f64>,
    /// Mean power over the window, W.
    pub mean_power_w: f64,
    /// Highest power between two consecutive samples in the window, W.
    pub peak_power_w: f64,
}

/// Energy and power of a cell, every figure with its source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyRecord {
    /// `rapl`, `nvml`, `estimated-tdp`, or sources joined with `+`.
    pub source: String,
    /// True only when every domain counted in the total was measured.
    pub measured: bool,
    /// How the figures were obtained, in words.
    pub method: String,
    /// Total energy over the window (domains that count in the total), J.
    pub energy_total_j: f64,
    /// Per batch, J.
    pub energy_per_batch_j: f64,
    /// Per item, J.
    pub energy_per_item_j: f64,
    /// Above idle over the window, J; only where every counted domain was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_above_idle_j: Option<f64>,
    /// Above idle per item, J; only where every counted domain was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_above_idle_per_item_j: Option<f64>,
    /// Idle power just before the window, W; only where every counted domain was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_power_w: Option<f64>,
    /// The estimate's coefficients, where any domain was estimated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<crate::meter::estimate::EstimateParams>,
    /// Low end of the estimate's band over the window, J (see `meter::estimate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_low_j: Option<f64>,
    /// High end of the estimate's band over the window, J.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_high_j: Option<f64>,
    /// Mean power over the window, W.
    pub mean_power_w: f64,
    /// Peak power between consecutive samples, W.
    pub peak_power_w: f64,
    /// Length of the energy window, s.
    pub window_s: f64,
    /// Length of the idle window whose power `idle_power_w` is, s; only where it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_window_s: Option<f64>,
    /// Background sampling rate, Hz.
    pub sampling_hz: f64,
    /// Samples taken (idle and timed windows).
    pub samples: usize,
    /// Intervals dropped: a counter going backwards, or a step implying an implausible power.
    pub dropped_samples: u64,
    /// Intervals the meter read over the cell (idle and timed windows).
    #[serde(default)]
    pub intervals: u64,
    /// True when more than [`MAX_DROPPED_SHARE`] of the intervals were dropped: the figures are
    /// not a clean measurement, and `source` and `method` say so.
    #[serde(default)]
    pub unreliable: bool,
    /// Per-domain figures.
    pub domains: Vec<DomainEnergy>,
    /// Peak GPU memory of the worker process, bytes (NVML).
    pub gpu_process_peak_bytes: Option<u64>,
    /// Peak GPU memory device-wide, bytes (NVML).
    pub gpu_device_peak_bytes: Option<u64>,
}

/// Sample indices and times that bound the idle and timed windows.
#[derive(Debug, Clone)]
pub struct Windows<'a> {
    /// First and last sample of the idle window.
    pub idle: (&'a Sample, &'a Sample),
    /// First and last sample of the timed window.
    pub timed: (&'a Sample, &'a Sample),
}

/// The `+`-joined label of the sources in `domains`, in first-seen order.
pub fn source_label(domains: &[DomainInfo]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for d in domains {
        if !seen.contains(&d.source.as_str()) {
            seen.push(d.source.as_str());
        }
    }
    seen.join("+")
}

/// The samples thinned so that consecutive ones are at least `min_dt_s` apart (the first and last
/// are kept): power over a shorter interval than the meter's resolution is noise, not a peak.
pub fn coarsen(samples: &[Sample], min_dt_s: f64) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let last_one = i + 1 == samples.len();
        match out.last() {
            Some(prev) if s.t_s - prev.t_s < min_dt_s && !last_one => {}
            Some(prev) if s.t_s - prev.t_s < min_dt_s && out.len() > 1 => {
                let n = out.len();
                out[n - 1] = s.clone();
            }
            _ => out.push(s.clone()),
        }
    }
    out
}

fn per_domain_peak(samples: &[Sample], from: f64, to: f64, i: usize) -> f64 {
    samples
        .windows(2)
        .filter(|w| w[0].t_s >= from && w[1].t_s <= to && w[1].t_s > w[0].t_s)
        .map(|w| (w[1].joules[i] - w[0].joules[i]) / (w[1].t_s - w[0].t_s))
        .fold(0.0, f64::max)
}

/// The share of dropped intervals above which a cell's energy is labelled unreliable.
pub const MAX_DROPPED_SHARE: f64 = 0.05;

impl EnergyRecord {
    /// The band's low and high energy per item, J, where the figure is an estimate.
    pub fn per_item_band_j(&self) -> Option<(f64, f64)> {
        let scale = self.band_factors()?;
        Some((
            self.energy_per_item_j * scale.0,
            self.energy_per_item_j * scale.1,
        ))
    }

    /// The band as factors of the central figure (low, high), where the figure is an estimate:
    /// every absolute figure derived from the energy (CO2e, projections) scales by them.
    pub fn band_factors(&self) -> Option<(f64, f64)> {
        let (lo, hi) = self.energy_low_j.zip(self.energy_high_j)?;
        (self.energy_total_j > 0.0).then(|| (lo / self.energy_total_j, hi / self.energy_total_j))
    }
}

/// Builds the energy record of a window of `iterations` batches of `batch_size` items. Peak power
/// is taken over intervals of at least `min_interval_s`. `dropped_samples` of `intervals` meter
/// intervals were dropped; over [`MAX_DROPPED_SHARE`] of them, the record is labelled unreliable.
/// `estimate` (the coefficients of an estimating meter) gives the band.
#[allow(clippy::too_many_arguments)]
pub fn energy_record(
    domains: &[DomainInfo],
    estimate: Option<&crate::meter::estimate::EstimateParams>,
    method: String,
    samples: &[Sample],
    windows: &Windows<'_>,
    iterations: usize,
    batch_size: usize,
    sampling_hz: f64,
    (dropped_samples, intervals): (u64, u64),
    min_interval_s: f64,
) -> EnergyRecord {
    let unreliable =
        dropped_samples > 0 && dropped_samples as f64 > MAX_DROPPED_SHARE * intervals.max(1) as f64;
    let coarse = coarsen(samples, min_interval_s);
    let (i0, i1) = windows.idle;
    let (w0, w1) = windows.timed;
    let idle_s = (i1.t_s - i0.t_s).max(f64::MIN_POSITIVE);
    let window_s = (w1.t_s - w0.t_s).max(f64::MIN_POSITIVE);
    let mut out = Vec::new();
    for (i, d) in domains.iter().enumerate() {
        let energy_j = (w1.joules[i] - w0.joules[i]).max(0.0);
        out.push(DomainEnergy {
            name: d.name.clone(),
            kind: d.kind,
            source: d.source,
            energy_j,
            idle_power_w: d
                .source
                .is_measured()
                .then(|| ((i1.joules[i] - i0.joules[i]) / idle_s).max(0.0)),
            mean_power_w: energy_j / window_s,
            peak_power_w: per_domain_peak(&coarse, w0.t_s, w1.t_s, i).max(energy_j / window_s),
        });
    }
    let counted: Vec<&DomainEnergy> = out.iter().filter(|d| d.kind.counts_in_total()).collect();
    let total: f64 = counted.iter().map(|d| d.energy_j).sum();
    let measured = counted.iter().all(|d| d.source.is_measured());
    let idle_power: Option<f64> =
        measured.then(|| counted.iter().filter_map(|d| d.idle_power_w).sum());
    let peak: f64 = counted.iter().map(|d| d.peak_power_w).sum();
    let above_idle = idle_power.map(|p| (total - p * window_s).max(0.0));
    let items = (iterations * batch_size).max(1) as f64;
    let band = estimate.map(|params| {
        let of = |kind: DomainKind| -> f64 {
            counted
                .iter()
                .filter(|d| d.kind == kind)
                .map(|d| d.energy_j)
                .sum()
        };
        let (cpu_j, ram_j) = (of(DomainKind::CpuEstimate), of(DomainKind::RamEstimate));
        let rest = total - cpu_j - ram_j;
        let (lo, hi) = params.band_j(cpu_j, ram_j, window_s);
        (rest + lo, rest + hi)
    });
    let (source, method) = if unreliable {
        (
            format!("{}-unreliable", source_label(domains)),
            format!(
                "UNRELIABLE, not a clean measurement: {dropped_samples} of {intervals} meter intervals dropped (a counter step backwards or implying an implausible power); {method}"
            ),
        )
    } else {
        (source_label(domains), method)
    };
    EnergyRecord {
        source,
        measured,
        method,
        energy_total_j: total,
        energy_per_batch_j: total / iterations.max(1) as f64,
        energy_per_item_j: total / items,
        energy_above_idle_j: above_idle,
        energy_above_idle_per_item_j: above_idle.map(|a| a / items),
        idle_power_w: idle_power,
        estimate: estimate.cloned(),
        energy_low_j: band.map(|b| b.0),
        energy_high_j: band.map(|b| b.1),
        mean_power_w: total / window_s,
        peak_power_w: peak,
        window_s,
        idle_window_s: measured.then_some(idle_s),
        sampling_hz,
        samples: samples.len(),
        dropped_samples,
        intervals,
        unreliable,
        domains: out,
        gpu_process_peak_bytes: None,
        gpu_device_peak_bytes: None,
    }
}

/// The power trace as CSV text (`t_s,domain,source,watts`): the power between each pair of
/// consecutive samples at least `min_interval_s` apart, stamped at the later one.
pub fn trace_csv(domains: &[DomainInfo], samples: &[Sample], min_interval_s: f64) -> String {
    let mut out = String::from("t_s,domain,source,watts\n");
    for w in coarsen(samples, min_interval_s).windows(2) {
        let dt = w[1].t_s - w[0].t_s;
        if dt <= 0.0 {
            continue;
        }
        for (i, d) in domains.iter().enumerate() {
            let watts = (w[1].joules[i] - w[0].joules[i]) / dt;
            out.push_str(&format!(
                "{:.6},{},{},{:.6}\n",
                w[1].t_s,
                d.name,
                d.source.as_str(),
                watts
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::sampler::Sample;

    fn record_with(dropped: u64, intervals: u64) -> EnergyRecord {
        let domains = [DomainInfo {
            name: "package-0".into(),
            kind: DomainKind::CpuPackage,
            source: Source::Rapl,
        }];
        let samples: Vec<Sample> = (0..4)
            .map(|i| Sample {
                t_s: i as f64,
                joules: vec![10.0 * i as f64],
            })
            .collect();
        energy_record(
            &domains,
            None,
            "RAPL".into(),
            &samples,
            &Windows {
                idle: (&samples[0], &samples[1]),
                timed: (&samples[1], &samples[3]),
            },
            10,
            1,
            10.0,
            (dropped, intervals),
            0.0,
        )
    }

    /// Guards issue 16, case 7: 11 of 15 intervals dropped is no clean measurement.
    #[test]
    fn a_cell_with_many_dropped_intervals_is_labelled_unreliable() {
        let bad = record_with(11, 15);
        assert!(bad.unreliable);
        assert_eq!(bad.source, "rapl-unreliable");
        assert!(bad.method.starts_with("UNRELIABLE"), "{}", bad.method);
        assert!(bad.method.contains("11 of 15"), "{}", bad.method);
        let fine = record_with(1, 100);
        assert!(!fine.unreliable);
        assert_eq!(fine.source, "rapl");
        assert_eq!((fine.dropped_samples, fine.intervals), (1, 100));
    }
}
