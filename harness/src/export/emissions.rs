//! `emissions.csv` in the layout of CodeCarbon 3.3.2 (`EmissionsData`: its 38 column names, order
//! and units: durations in s, energy in kWh, emissions in kg CO2e, power in W, RAM in GiB, water in
//! litres; timestamps `YYYY-MM-DDTHH:MM:SS`, here in UTC), one row a measured cell, so CodeCarbon
//! users can load slimbench runs in the tools they have (CodeCarbon backs up a file whose header
//! differs instead of appending to it). What CodeCarbon has no column for is said in
//! `project_name`: the energy source (`estimated-tdp`, `rapl`, ...) and that each row covers the
//! cell's timed window only. `tracking_mode` is `process`; `experiment_id` names the cell; columns
//! CodeCarbon fills from Python (versions, location) stay empty.

use super::Exporter;
use crate::analysis::RunData;
use crate::meter::DomainKind;

/// Writes `emissions.csv`.
pub struct EmissionsExporter;

/// The CodeCarbon version whose columns [`COLUMNS`] copies.
pub const CODECARBON_VERSION: &str = "3.3.2";

/// CodeCarbon 3.3.2's columns (`codecarbon/output_methods/emissions_data.py`), in its order.
pub const COLUMNS: &[&str] = &[
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "water_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
];

const GIB: f64 = (1u64 << 30) as f64;

/// A figure in scientific notation as pandas writes small ones, and a plain 0 for zero.
fn sci(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else {
        format!("{v:e}")
    }
}

impl Exporter for EmissionsExporter {
    fn export(&self, data: &RunData) -> anyhow::Result<Vec<u8>> {
        let c = &data.manifest.spec.carbon;
        let mut w = ::csv::Writer::from_writer(Vec::new());
        w.write_record(COLUMNS)?;
        let (cloud_provider, cloud_region) =
            match c.region.as_deref().and_then(|r| r.split_once(':')) {
                Some((p, r)) => (p.to_string(), r.to_string()),
                None => (String::new(), String::new()),
            };
        for r in &data.records {
            let Some(e) = &r.energy else { continue };
            let group = |kinds: &[DomainKind]| -> (f64, f64) {
                let ds = e.domains.iter().filter(|d| kinds.contains(&d.kind));
                ds.fold((0.0, 0.0), |(j, w), d| (j + d.energy_j, w + d.mean_power_w))
            };
            let (cpu_j, cpu_w) = group(&[DomainKind::CpuPackage, DomainKind::CpuEstimate]);
            let (gpu_j, gpu_w) = group(&[DomainKind::Gpu]);
            let (ram_j, ram_w) = group(&[DomainKind::Dram, DomainKind::RamEstimate]);
            let kwh = |j: f64| j / 3.6e6;
            let total_kwh = kwh(e.energy_total_j);
            // Each cell's own intensity and PUE (shares merged with different settings keep theirs).
            let (intensity, pue) = r
                .carbon
                .as_ref()
                .map_or((c.intensity_g_per_kwh, c.pue), |rc| {
                    (rc.intensity_g_per_kwh, rc.pue)
                });
            let kg = total_kwh * pue * intensity / 1e3;
            let gpus = e
                .domains
                .iter()
                .filter(|d| d.kind == DomainKind::Gpu)
                .count();
            let estimated_cpu = e.domains.iter().any(|d| d.kind == DomainKind::CpuEstimate);
            // The estimate's CPU power is the busy share of the TDP, so it gives the utilization.
            let cpu_utilization = if estimated_cpu {
                let tdp = crate::meter::estimate::shipped_tdp(&r.host.cpu_model).tdp_w;
                format!("{:.1}", 100.0 * cpu_w / tdp)
            } else {
                String::new()
            };
            let total_gib = r.host.total_memory_bytes as f64 / GIB;
            let (ram_used, ram_share) = match r.peak_rss_bytes {
                Some(b) if total_gib > 0.0 => (
                    format!("{:.3}", b as f64 / GIB),
                    format!("{:.1}", 100.0 * b as f64 / GIB / total_gib),
                ),
                _ => (String::new(), String::new()),
            };
            w.write_record([
                r.timestamp_utc.trim_end_matches('Z').to_string(),
                format!("slimbench ({} energy, timed window only)", e.source),
                r.run_id.clone(),
                r.key.to_string(),
                format!("{}", e.window_s),
                sci(kg),
                sci(kg / e.window_s.max(f64::MIN_POSITIVE)),
                format!("{cpu_w}"),
                format!("{gpu_w}"),
                format!("{ram_w}"),
                sci(kwh(cpu_j)),
                sci(kwh(gpu_j)),
                sci(kwh(ram_j)),
                sci(total_kwh),
                // No water usage effectiveness is known: 0 L/kWh, as CodeCarbon's default.
                "0".to_string(),
                c.country_name.clone().unwrap_or_default(),
                c.country_iso3.clone().unwrap_or_default(),
                c.region.clone().unwrap_or_default(),
                cloud_provider.clone(),
                cloud_region.clone(),
                r.host.os.clone(),
                String::new(),
                String::new(),
                r.host.logical_cores.to_string(),
                r.host.cpu_model.clone(),
                gpus.to_string(),
                String::new(),
                String::new(),
                String::new(),
                format!("{total_gib:.3}"),
                "process".to_string(),
                cpu_utilization,
                String::new(),
                ram_share,
                ram_used,
                if cloud_provider.is_empty() { "N" } else { "Y" }.to_string(),
                format!("{pue}"),
                "0".to_string(),
            ])?;
        }
        w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    /// The header equals CodeCarbon 3.3.2's `EmissionsData` fields, in order (38 columns).
    #[test]
    fn the_header_is_codecarbon_3_3_2s() {
        let expected =
            "timestamp,project_name,run_id,experiment_id,duration,emissions,emissions_rate,\
cpu_power,gpu_power,ram_power,cpu_energy,gpu_energy,ram_energy,energy_consumed,water_consumed,\
country_name,country_iso_code,region,cloud_provider,cloud_region,os,python_version,\
codecarbon_version,cpu_count,cpu_model,gpu_count,gpu_model,longitude,latitude,ram_total_size,\
tracking_mode,cpu_utilization_percent,gpu_utilization_percent,ram_utilization_percent,\
ram_used_gb,on_cloud,pue,wue";
        assert_eq!(super::COLUMNS.join(","), expected);
        assert_eq!(super::COLUMNS.len(), 38);
    }
}
