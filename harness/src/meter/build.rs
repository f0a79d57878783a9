//! Meters the building of variants (training, fine-tuning, distillation, quantization, reference
//! passes) with the same meters and labels as a cell: while a [`BuildMeter`] lives, the models
//! crate's build steps read it (`slimbench_models::build_cost`).

use std::sync::Arc;

use super::choose::{open_meter, MeterSettings};
use super::record::source_label;
use super::sampler::Sampler;

/// The build meter, installed until dropped.
pub struct BuildMeter {
    sampler: Option<Arc<Sampler>>,
}

impl BuildMeter {
    /// Opens the meters `settings` asks for and installs them for build steps; where none opens,
    /// build steps are timed only (and say so: no energy, no source).
    pub fn install(settings: &MeterSettings, host_cpu: &str) -> Self {
        let Ok(opened) = open_meter(settings) else {
            return Self { sampler: None };
        };
        let domains = opened.meter.domains().to_vec();
        let counted: Vec<bool> = domains.iter().map(|d| d.kind.counts_in_total()).collect();
        let label = source_label(&domains);
        // Polled in the background so that a counter that wraps during a long training is caught.
        let sampler = Arc::new(Sampler::start(opened.meter, 10.0));
        let reader = Arc::clone(&sampler);
        slimbench_models::build_cost::install_meter(
            Box::new(move || {
                let sample = reader.read_now().ok()?;
                Some(
                    sample
                        .joules
                        .iter()
                        .zip(&counted)
                        .filter(|(_, c)| **c)
                        .map(|(j, _)| j)
                        .sum(),
                )
            }),
            &label,
            host_cpu,
        );
        Self {
            sampler: Some(sampler),
        }
    }
}

impl Drop for BuildMeter {
    fn drop(&mut self) {
        slimbench_models::build_cost::remove_meter();
        if let Some(sampler) = self.sampler.take().and_then(Arc::into_inner) {
            let _ = sampler.stop();
        }
    }
}
