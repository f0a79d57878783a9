//! The content of the report (context, results, comparison with the baseline, best variants and
//! projection, method and caveats) as format-free sections that the Markdown and HTML exporters
//! render.

use super::table::{any_compute, any_fidelity, fidelity_text, gflops_text, peak_text};
use crate::carbon::CAR_FACTOR_SOURCE;
use crate::report::{
    best_variants, energy_sources, method_text, variant_rows, QualityBudget, RunData, Volume,
};
use crate::results::Record;

/// A table: header and rows of cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column titles.
    pub header: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<String>>,
}

/// One section of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Heading.
    pub title: String,
    /// Paragraphs before the table.
    pub paragraphs: Vec<String>,
    /// The table, if any.
    pub table: Option<Table>,
}

fn s(v: &str) -> String {
    v.to_string()
}

fn opt(v: Option<f64>, fmt: impl Fn(f64) -> String) -> String {
    v.map(fmt).unwrap_or_else(|| "-".into())
}

fn context(data: &RunData) -> Section {
    let m = &data.manifest;
    let host = data.records.first().map(|r| &r.host);
    let mut devices: Vec<String> = data.records.iter().map(|r| r.key.device.clone()).collect();
    devices.dedup();
    let (sources, measured) = energy_sources(&data.records);
    let c = &m.spec.carbon;
    let rows = vec![
        vec![s("run"), m.run_id.clone()],
        vec![s("date (UTC)"), m.started_utc.clone()],
        vec![
            s("slimbench"),
            format!("{} (commit {})", m.slimbench_version, m.commit),
        ],
        vec![
            s("host"),
            host.map(|h| {
                format!(
                    "{}, {} logical cores, {:.1} GiB, {}",
                    h.cpu_model,
                    h.logical_cores,
                    h.total_memory_bytes as f64 / (1u64 << 30) as f64,
                    h.os
                )
            })
            .unwrap_or_default(),
        ],
        vec![s("devices"), devices.join(", ")],
        vec![
            s("energy"),
            format!(
                "{} ({})",
                sources.join(", "),
                if measured {
                    "measured"
                } else {
                    "ESTIMATED, not measured"
                }
            ),
        ],
        vec![
            s("grid intensity"),
            format!(
                "{} g CO2e/kWh: {}{}",
                c.intensity_g_per_kwh,
                c.source,
                c.year
                    .map(|y| format!(" (figure of {y})"))
                    .unwrap_or_default()
            ),
        ],
        vec![s("PUE"), format!("{}", c.pue)],
    ];
    Section {
        title: s("Context"),
        paragraphs: vec![],
        table: Some(Table {
            header: vec![s("what"), s("value")],
            rows,
        }),
    }
}

fn results(records: &[Record]) -> Section {
    let mut rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let q = r.quality.as_ref();
            let l = r.latency.as_ref();
            let e = r.energy.as_ref();
            vec![
                r.key.model.clone(),
                r.key.technique.clone(),
                r.key.device.clone(),
                r.key.batch_label(),
                match &r.error {
                    Some(e) => format!(
                        "{}: {}",
                        r.status.as_str(),
                        e.lines()
                            .next()
                            .unwrap_or("")
                            .chars()
                            .take(80)
                            .collect::<String>()
                    ),
                    None => r.status.as_str().to_string(),
                },
                opt(q.map(|q| q.value_pct), |v| format!("{v:.2}")),
                opt(q.map(|q| q.delta_points), |v| format!("{v:+.2}")),
                opt(r.model_bytes.map(|b| b as f64 / 1024.0), |v| {
                    format!("{v:.1}")
                }),
                opt(l.map(|l| l.p50_ms), |v| format!("{v:.4}")),
                opt(l.map(|l| l.p99_ms), |v| format!("{v:.4}")),
                opt(r.throughput_items_per_s, |v| format!("{v:.0}")),
                opt(e.map(|e| e.energy_per_item_j), |v| format!("{v:.3e}")),
                e.map(|e| e.source.clone()).unwrap_or_else(|| "-".into()),
                opt(r.carbon.as_ref().map(|c| c.co2e_per_million_items_g), |v| {
                    format!("{v:.3}")
                }),
                opt(
                    r.peak_rss_bytes.map(|b| b as f64 / (1u64 << 20) as f64),
                    |v| format!("{v:.1}"),
                ),
            ]
        })
        .collect();
    let mut header: Vec<String> = [
        "model",
        "technique",
        "device",
        "batch",
        "status",
        "accuracy %",
        "change (points)",
        "size KiB",
        "p50 ms",
        "p99 ms",
        "items/s",
        "energy J/item",
        "energy source",
        "g CO2e / 1M items",
        "peak RSS MiB",
    ]
    .map(s)
    .to_vec();
    if any_fidelity(records) {
        header.insert(7, s("fidelity (cosine to fp32)"));
        for (row, r) in rows.iter_mut().zip(records) {
            row.insert(7, fidelity_text(r));
        }
    }
    if any_compute(records) {
        header.extend([s("GFLOP/s"), s("% of calibrated peak")]);
        for (row, r) in rows.iter_mut().zip(records) {
            row.extend([gflops_text(r), peak_text(r)]);
        }
    }
    Section {
        title: s("Results"),
        paragraphs: vec![],
        table: Some(Table { header, rows }),
    }
}

fn against_baseline(records: &[Record], budget: QualityBudget) -> Section {
    let rows = variant_rows(records, budget)
        .into_iter()
        .map(|v| {
            vec![
                v.key.to_string(),
                opt(v.quality_delta_points, |d| format!("{d:+.2}")),
                opt(v.speedup, |x| format!("{x:.2}x")),
                opt(v.energy_saved_pct, |p| format!("{p:+.1}%")),
                opt(v.co2e_saved_pct, |p| format!("{p:+.1}%")),
                opt(v.size_ratio, |r| format!("{:.1}%", 100.0 * r)),
                if v.within_budget { s("yes") } else { s("no") },
            ]
        })
        .collect();
    Section {
        title: s("Variants against their baseline"),
        paragraphs: vec![format!(
            "Each variant against the uncompressed model of the same model, device and batch size. Quality budget: a drop of at most {} point(s).",
            budget.max_drop_points
        )],
        table: Some(Table {
            header: [
                "cell", "quality change (points)", "speed-up", "energy saved", "CO2e saved",
                "size vs baseline", "within budget",
            ]
            .map(s)
            .to_vec(),
            rows,
        }),
    }
}

fn best(data: &RunData, budget: QualityBudget, volume: Volume) -> Section {
    let best = best_variants(&data.records, budget, &data.manifest.spec.carbon, volume);
    let rows = best
        .iter()
        .map(|b| {
            vec![
                format!(
                    "{} / {} / batch {}",
                    b.row.key.model,
                    b.row.key.device,
                    b.row.key.batch_label()
                ),
                b.row.key.technique.clone(),
                opt(b.row.quality_delta_points, |d| format!("{d:+.2}")),
                opt(b.row.speedup, |x| format!("{x:.2}x")),
                opt(b.row.energy_saved_pct, |p| format!("{p:.1}%")),
                format!("{:.3}", b.projection.kwh_saved),
                format!("{:.3}", b.projection.kg_co2e_saved),
                format!("{:.1}", b.projection.car_km),
            ]
        })
        .collect();
    let mut paragraphs = vec![format!(
        "For each model, device and batch size: the variant within the quality budget (a drop of at most {} point) with the least energy per item, and what it saves at {} inferences a day for {} days. Car equivalent: {}.",
        budget.max_drop_points, volume.items_per_day, volume.days, CAR_FACTOR_SOURCE
    )];
    if best.is_empty() {
        paragraphs.push(s(
            "No variant within the budget used less energy than its baseline.",
        ));
    }
    Section {
        title: s("Best variant within the quality budget, and its projection"),
        paragraphs,
        table: Some(Table {
            header: [
                "where",
                "variant",
                "quality change (points)",
                "speed-up",
                "energy saved",
                "kWh saved / year",
                "kg CO2e saved / year",
                "car km equivalent",
            ]
            .map(s)
            .to_vec(),
            rows,
        }),
    }
}

/// Every section of the report, in order.
pub fn sections(data: &RunData) -> Vec<Section> {
    let budget = QualityBudget::default();
    vec![
        context(data),
        best(data, budget, Volume::default()),
        against_baseline(&data.records, budget),
        results(&data.records),
        Section {
            title: s("Method and caveats"),
            paragraphs: method_text(data),
            table: None,
        },
    ]
}
