//! The report's prose about its method: the estimate banner and "Method and caveats", each
//! sentence true for the cells the run holds.

use crate::analysis::{carbon_settings_used, energy_sources, RunData};
use crate::results::Record;

/// The banner atop a report whose energy is not all measured, for both report formats.
pub fn estimate_banner(records: &[Record]) -> Option<String> {
    let (sources, measured) = energy_sources(records);
    (!measured).then(|| {
        format!(
            "Energy in this report is ESTIMATED ({}), not measured. Relative savings compare cells estimated alike; every absolute figure carries its band [low-high]. See Method and caveats.",
            sources.join(", ")
        )
    })
}

/// The method and its caveats, in plain words, for both report formats.
pub fn method_text(data: &RunData) -> Vec<String> {
    let (_, measured) = energy_sources(&data.records);
    let mut out = vec![
        format!("Each cell ({}) ran in a fresh worker process after warm-up; timed iterations ran until both a minimum count and a minimum duration were reached. Latency is per timed call (below, per family); percentiles use linear interpolation (type 7). The mean's 95% interval is mean +/- 1.96 standard errors over every iteration; the median's is a percentile bootstrap (1,000 resamples, seeded) of the samples the record keeps.", cell_dimensions(&data.records)),
        "Speed-up and energy per item use one statistic, the mean over the timed window: speed-up is the ratio of mean latencies (its interval from both means' intervals), energy per item the window's energy over the items it processed. A difference inside its 95% interval is reported as a tie.".to_string(),
        "A quality change is against the uncompressed model on the same items. Where both answered the same classification items, the change is tested pairwise: McNemar's exact test on the items only one of them got right (p >= 0.05 is a tie), with the 95% interval of the paired difference (Wald with Agresti and Min's adjustment); n is the number of items. Elsewhere (and between two variants in a tie-break) two independent binomial intervals are used. Text fidelity and language-model KL divergence are means over items.".to_string(),
        match carbon_settings_used(&data.records).as_slice() {
            used if used.len() > 1 => format!(
                "CO2e = energy (kWh) x PUE x grid intensity, with each cell's own settings: this run joins shares measured with different ones ({}).",
                used.iter()
                    .map(|(i, s, p, n)| format!("{i} g/kWh ({s}), PUE {p}: {n} cells"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            _ => format!(
                "CO2e = energy (kWh) x PUE ({}) x grid intensity ({} g/kWh: {}).",
                data.manifest.spec.carbon.pue,
                data.manifest.spec.carbon.intensity_g_per_kwh,
                data.manifest.spec.carbon.source
            ),
        },
        format!("Car equivalent: {}.", crate::carbon::CAR_FACTOR_SOURCE),
    ];
    // Each family's own timed call and quality, before the general quality sentence.
    out.splice(2..2, family_methods(&data.records));
    if measured {
        out.push("Idle power was measured just before each cell; energy above idle is in results.csv beside the total.".to_string());
    }
    if !measured {
        let (sources, _) = energy_sources(&data.records);
        let model = data
            .records
            .iter()
            .find_map(|r| r.energy.as_ref()?.estimate.as_ref())
            .map(|p| p.describe())
            .unwrap_or_default();
        out.push(format!(
            "CAVEAT: energy here is ESTIMATED ({}), not measured: {model}. It cannot see idle draw, frequency scaling or the memory system, so no figure above idle is given.",
            sources.join(", ")
        ));
        out.push("Relative figures (a variant's energy saved against its baseline, speed-ups) compare two cells estimated alike: the coefficients' level cancels, and what remains is each cell's window and CPU time. Absolute figures (J, Wh, g CO2e, yearly projections, car distance) depend on the coefficients: each is marked estimated and given with its band [low-high], the same CPU time under the coefficients of the CPU's microarchitecture and its neighbours and RAM at the low and high published per-GB figures. Measure with RAPL or NVML before reporting absolute figures as facts.".to_string());
    }
    out.push("Projections multiply a per-item saving measured on this machine by a volume; real deployments batch, idle and scale differently.".to_string());
    out
}

/// The dimensions a cell of this run is made of: model, technique and device, then each
/// dimension some cell has (batch size always; then each of [`slimbench_models::dimension::all`]).
fn cell_dimensions(records: &[Record]) -> String {
    let mut dims = vec!["model", "technique", "device", "batch size"];
    for d in slimbench_models::dimension::all() {
        if records.iter().any(|r| r.key.dim(d).is_some()) {
            dims.push(d.name);
        }
    }
    dims.join(" x ")
}

/// One sentence for each family whose cells the run holds: its models, what one timed call does
/// and how its quality is measured, as the family itself states them.
fn family_methods(records: &[Record]) -> Vec<String> {
    let mut families: Vec<(slimbench_models::family::MethodText, Vec<&str>)> = Vec::new();
    let mut unknown: Vec<&str> = Vec::new();
    for r in records {
        let model = r.key.model.as_str();
        match slimbench_models::catalog::method(model) {
            Ok(method) => match families.iter_mut().find(|(m, _)| *m == method) {
                Some((_, models)) if models.contains(&model) => {}
                Some((_, models)) => models.push(model),
                None => families.push((method, vec![model])),
            },
            Err(_) if !unknown.contains(&model) => unknown.push(model),
            Err(_) => {}
        }
    }
    let mut out: Vec<String> = families
        .into_iter()
        .map(|(m, models)| {
            format!(
                "{} ({}): one timed call is {}. Quality is {}.",
                models.join(", "),
                m.kind,
                m.timed_call,
                m.quality
            )
        })
        .collect();
    if !unknown.is_empty() {
        out.push(format!(
            "{}: a model this build of slimbench does not know; its cells are shown as recorded, without a statement of their method.",
            unknown.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostInfo;
    use crate::results::Status;
    use slimbench_models::workload::Cell;

    fn record(model: &str, seq_len: Option<usize>, gen_tokens: Option<usize>) -> Record {
        use slimbench_models::dimension::{GEN_TOKENS, SEQ_LEN};
        let mut key = Cell::new(model, "fp32".parse().unwrap(), "cpu", 1);
        if let Some(s) = seq_len {
            key.dims.set(&SEQ_LEN, s);
        }
        if let Some(g) = gen_tokens {
            key.dims.set(&GEN_TOKENS, g);
        }
        let host = HostInfo::fixture();
        Record::empty("run", key, host, Status::Ok)
    }

    #[test]
    fn each_family_present_states_its_own_method_and_no_other() {
        let digits = [
            record("digits-mlp", None, None),
            record("digits-cnn", None, None),
        ];
        let text = family_methods(&digits).join(" ");
        assert!(
            text.starts_with("digits-mlp, digits-cnn (image classifier"),
            "{text}"
        );
        assert!(
            !text.contains("perplexity") && !text.contains("spam"),
            "{text}"
        );
        assert_eq!(
            cell_dimensions(&digits),
            "model x technique x device x batch size"
        );

        let mixed = [
            record("minilm", Some(128), None),
            record("smollm2", Some(64), Some(16)),
            record("someone-elses-model", None, None),
        ];
        let lines = family_methods(&mixed);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("minilm (BERT") && lines[0].contains("spam accuracy"));
        assert!(lines[1].starts_with("smollm2 (llama") && lines[1].contains("perplexity"));
        assert!(lines[2].starts_with("someone-elses-model: a model this build"));
        assert_eq!(
            cell_dimensions(&mixed),
            "model x technique x device x batch size x sequence length x generated tokens"
        );
    }
}
