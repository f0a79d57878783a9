//! `report.html`: the sustainability report as one self-contained page: inline CSS, charts inlined
//! as SVG, no script and no external request.

use super::sections::sections;
use super::Exporter;
use crate::analysis::recommend::recommendations;
use crate::analysis::{RunData, Volume};
use crate::chart::bars::{bars_chart, BarMetric};
use crate::chart::pareto::{pareto_chart, Cost, Quality};
use crate::chart::trace::{parse_trace, trace_chart};
use crate::chart::{Chart, Layout};
use crate::results::Record;
use crate::run_dir::{cell_slug, slug};

/// Writes `report.html`.
pub struct HtmlExporter;

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page's style. Wide screens: two charts a row from 1300 px (each then shown at least 0.91
/// of its 680 px), one a row below; phones (under 720 px): the narrow charts, and under 600 px
/// every table row as a card of label: value lines, so nothing scrolls sideways. From 600 px a
/// table sits in a box of the page's width that scrolls sideways itself when the table is wider
/// (the results table of a run with many measures on a laptop's screen), so the page never does;
/// at 1400 px (13 px text) the results table of every README run fits without it.
const STYLE: &str = "body{font-family:sans-serif;margin:0 auto;padding:1em 16px;max-width:1400px;color:#222;line-height:1.4}\
.scroll{overflow-x:auto;margin:1em 0}\
table{border-collapse:collapse;font-size:13px}\
th,td{border:1px solid #bbb;padding:3px 5px;text-align:left;vertical-align:top}th{background:#eee}\
.charts{display:grid;grid-template-columns:1fr;gap:16px}\
.charts figure{margin:0;max-width:680px}.charts svg{border:1px solid #ddd;width:100%;height:auto;display:block}\
.narrow{display:none}\
figcaption{font-size:14px;color:#444;margin-top:4px}\
.estimated{background:#fff3cd;border:1px solid #e0c060;padding:8px}\
@media (min-width:1300px){.charts{grid-template-columns:1fr 1fr}}\
@media (max-width:719px){body{padding:0.5em 8px}.wide{display:none}.narrow{display:block}.charts figure{max-width:400px}}\
@media (max-width:599px){table,tbody,tr,td{display:block}table{border:0}tr:first-child{display:none}\
tr{border:1px solid #bbb;margin:0 0 10px;padding:4px 6px}td{border:0;padding:2px 0;overflow-wrap:anywhere}\
td::before{content:attr(data-label) \": \";font-weight:bold}}";

/// The anchor of a section heading.
fn anchor(title: &str) -> String {
    title
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// The groups charts are drawn for: (model with its sequence length, device), in record order.
fn groups(records: &[Record]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for r in records {
        let g = (r.key.model_label(), r.key.device.clone());
        if !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

/// Every chart of the run, as (file stem, title, chart).
pub fn charts(data: &RunData) -> Vec<(String, String, Chart)> {
    let mut out = Vec::new();
    let budget = data.budget();
    let recs = recommendations(
        &data.records,
        budget,
        &data.manifest.spec.carbon,
        Volume::default(),
    );
    // A chart shared alone keeps the caveat: every energy chart's own title says "estimated".
    let (_, measured) = crate::analysis::energy_sources(&data.records);
    let energy_word = if measured {
        "energy"
    } else {
        "energy (ESTIMATED)"
    };
    for (model, device) in groups(&data.records) {
        let cells: Vec<&Record> = data
            .records
            .iter()
            .filter(|r| r.key.model_label() == model && r.key.device == device)
            .collect();
        let mut batches: Vec<usize> = cells.iter().map(|r| r.key.batch_size).collect();
        batches.sort();
        batches.dedup();
        for b in batches {
            let at: Vec<&Record> = cells
                .iter()
                .copied()
                .filter(|r| r.key.batch_size == b)
                .collect();
            let language = at
                .iter()
                .any(|r| r.quality.as_ref().is_some_and(|q| q.language.is_some()));
            let mut axes = vec![
                (Cost::Energy, Quality::Metric, "energy"),
                (Cost::Latency, Quality::Metric, "latency"),
            ];
            if language {
                axes.push((Cost::Energy, Quality::KlDivergence, "kld-energy"));
            }
            for (cost, quality, name) in axes {
                let shown = if name == "latency" { name } else { energy_word };
                let metric = quality.name(&at);
                let title = format!("{model} on {device}, batch {b}: {metric} vs {shown}");
                let pick = recs
                    .iter()
                    .find(|rec| {
                        rec.baseline.model_label() == model
                            && rec.baseline.device == device
                            && rec.baseline.batch_size == b
                    })
                    .and_then(|rec| rec.pick.as_ref())
                    .map(|p| p.key.variant_label());
                if let Some(c) = pareto_chart(
                    &at,
                    cost,
                    quality,
                    &title,
                    pick.as_deref(),
                    budget.max_drop_points,
                ) {
                    out.push((
                        slug(&format!("pareto-{name}-{model}-{device}-b{b}")),
                        title,
                        Chart::Pareto(c),
                    ));
                }
            }
        }
        for (metric, name) in [
            (BarMetric::Latency, "latency"),
            (BarMetric::Energy, "energy"),
            (BarMetric::Memory, "memory"),
            (BarMetric::Size, "size"),
            (BarMetric::PrefillRate, "prefill-rate"),
            (BarMetric::DecodeRate, "decode-rate"),
            (BarMetric::PrefillEnergy, "prefill-energy"),
        ] {
            // A language model's item is a generated token (the decode phase).
            let generative = cells.iter().any(|r| r.generation.is_some());
            let shown = match name {
                "latency" if generative => "latency per generated token (decode)",
                "latency" => "latency per item",
                "energy" if generative && measured => "energy per generated token (decode)",
                "energy" if generative => "energy per generated token (decode, ESTIMATED)",
                "energy" if measured => "energy per item",
                "energy" => "energy per item (ESTIMATED)",
                "memory" => "peak memory",
                "prefill-rate" => "prefill tokens per second",
                "decode-rate" => "decode tokens per second",
                "prefill-energy" if measured => "energy per prompt token (prefill)",
                "prefill-energy" => "energy per prompt token (prefill, ESTIMATED)",
                _ => "model size",
            };
            let title = format!("{model} on {device}: {shown}");
            if let Some(c) = bars_chart(&cells, metric, &title) {
                out.push((
                    slug(&format!("bars-{name}-{model}-{device}")),
                    title,
                    Chart::Bars(c),
                ));
            }
        }
    }
    // One power scale for every trace of the run, so their heights compare.
    let run_w_max = data
        .traces
        .values()
        .map(|t| crate::chart::trace::peak_watts(&parse_trace(t)))
        .fold(0.0, f64::max);
    for r in &data.records {
        let slug = cell_slug(&r.key);
        if let Some(text) = data.traces.get(&slug) {
            let title = if measured {
                format!("power trace: {}", r.key)
            } else {
                format!("power trace (ESTIMATED): {}", r.key)
            };
            let timed = r.energy.as_ref().map(|e| e.window_s);
            if let Some(c) = trace_chart(parse_trace(text), &title, run_w_max, timed) {
                out.push((format!("trace-{slug}"), title, Chart::Trace(c)));
            }
        }
    }
    out.into_iter()
        .map(|(stem, t, c)| (stem.replace(':', "-"), t, c))
        .collect()
}

impl Exporter for HtmlExporter {
    fn export(&self, data: &RunData) -> anyhow::Result<Vec<u8>> {
        let mut out = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>slimbench report {}</title><style>{STYLE}</style></head><body>\n<h1>slimbench report: {}</h1>\n",
            esc(&data.manifest.run_id),
            esc(&data.manifest.run_id)
        );
        if let Some(banner) = crate::export::method::estimate_banner(&data.records) {
            out.push_str(&format!(
                "<p class=\"estimated\"><b>{}</b></p>\n",
                esc(&banner)
            ));
        }
        // Each chart twice: wide for screens from about 720 px, narrow for phones (see STYLE).
        let charts: Vec<(String, String, String)> = charts(data)
            .into_iter()
            .map(|(stem, title, c)| {
                Ok((
                    stem,
                    title,
                    format!(
                        "<div class=\"wide\">{}</div><div class=\"narrow\">{}</div>",
                        c.svg(Layout::Wide)?,
                        c.svg(Layout::Narrow)?
                    ),
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        let sections = sections(data);
        out.push_str("<nav><b>Contents</b><ul>");
        for (i, section) in sections.iter().enumerate() {
            out.push_str(&format!(
                "<li><a href=\"#{}\">{}</a></li>",
                anchor(&section.title),
                esc(&section.title)
            ));
            if i == 1 {
                out.push_str("<li><a href=\"#charts\">Charts</a></li>");
            }
        }
        out.push_str("</ul></nav>\n");
        let figure = |stem: &str, title: &str, svg: &str| {
            format!(
                "<figure id=\"{}\">{svg}<figcaption>{}</figcaption></figure>\n",
                esc(stem),
                esc(title)
            )
        };
        for (i, section) in sections.into_iter().enumerate() {
            out.push_str(&format!(
                "<h2 id=\"{}\">{}</h2>\n",
                anchor(&section.title),
                esc(&section.title)
            ));
            for p in &section.paragraphs {
                out.push_str(&format!("<p>{}</p>\n", esc(p)));
            }
            if let Some(t) = &section.table {
                out.push_str("<div class=\"scroll\"><table><tr>");
                for h in &t.header {
                    out.push_str(&format!("<th>{}</th>", esc(h)));
                }
                out.push_str("</tr>\n");
                for row in &t.rows {
                    out.push_str("<tr>");
                    for (i, c) in row.iter().enumerate() {
                        let label = t.header.get(i).map(String::as_str).unwrap_or("");
                        out.push_str(&format!(
                            "<td data-label=\"{}\">{}</td>",
                            esc(label),
                            esc(c)
                        ));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</table></div>\n");
            }
            if i == 1 {
                out.push_str("<h2 id=\"charts\">Charts</h2>\n<div class=\"charts\">\n");
                for (stem, title, svg) in charts.iter().filter(|c| !c.0.starts_with("trace-")) {
                    out.push_str(&figure(stem, title, svg));
                }
                out.push_str("</div>\n<details><summary>Power traces, one per cell</summary><div class=\"charts\">\n");
                for (stem, title, svg) in charts.iter().filter(|c| c.0.starts_with("trace-")) {
                    out.push_str(&figure(stem, title, svg));
                }
                out.push_str("</div></details>\n");
            }
        }
        out.push_str("</body></html>\n");
        Ok(out.into_bytes())
    }
}
