//! `emissions.csv` in CodeCarbon's layout (its column names and units: durations in s, energy in
//! kWh, emissions in kg CO2e, power in W), one row a measured cell, so CodeCarbon users can load
//! slimbench runs in the tools they have. `tracking_mode` is `process` (the worker's window);
//! `experiment_id` names the cell; columns CodeCarbon fills from Python (versions) stay empty.

use super::Exporter;
use crate::meter::DomainKind;
use crate::report::RunData;

/// Writes `emissions.csv`.
pub struct EmissionsExporter;

/// CodeCarbon's columns, in its order.
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
    "on_cloud",
    "pue",
];

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
            let kg = total_kwh * c.pue * c.intensity_g_per_kwh / 1e3;
            let gpus = e
                .domains
                .iter()
                .filter(|d| d.kind == DomainKind::Gpu)
                .count();
            w.write_record([
                r.timestamp_utc.clone(),
                "slimbench".to_string(),
                r.run_id.clone(),
                r.key.to_string(),
                format!("{}", e.window_s),
                format!("{kg:e}"),
                format!("{:e}", kg / e.window_s.max(f64::MIN_POSITIVE)),
                format!("{cpu_w}"),
                format!("{gpu_w}"),
                format!("{ram_w}"),
                format!("{:e}", kwh(cpu_j)),
                format!("{:e}", kwh(gpu_j)),
                format!("{:e}", kwh(ram_j)),
                format!("{total_kwh:e}"),
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
                format!("{:.3}", r.host.total_memory_bytes as f64 / 1e9),
                "process".to_string(),
                if cloud_provider.is_empty() { "N" } else { "Y" }.to_string(),
                format!("{}", c.pue),
            ])?;
        }
        w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
    }
}
