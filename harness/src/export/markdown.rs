//! `report.md`: the sustainability report in Markdown, fit for a CI job summary.

use super::sections::sections;
use super::Exporter;
use crate::analysis::RunData;

/// Writes `report.md`.
pub struct MarkdownExporter;

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

impl Exporter for MarkdownExporter {
    fn export(&self, data: &RunData) -> anyhow::Result<Vec<u8>> {
        let mut out = format!("# slimbench report: {}\n", data.manifest.run_id);
        if let Some(banner) = crate::export::method::estimate_banner(&data.records) {
            out.push_str(&format!("\n> **{banner}**\n"));
        }
        for section in sections(data) {
            out.push_str(&format!("\n## {}\n\n", section.title));
            for p in &section.paragraphs {
                out.push_str(p);
                out.push_str("\n\n");
            }
            if let Some(t) = &section.table {
                let header: Vec<String> = t.header.iter().map(|h| cell(h)).collect();
                out.push_str(&format!("| {} |\n", header.join(" | ")));
                out.push_str(&format!("|{}\n", " --- |".repeat(header.len())));
                for row in &t.rows {
                    let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
                    out.push_str(&format!("| {} |\n", cells.join(" | ")));
                }
            }
        }
        let charts = super::html::charts(data);
        if !charts.is_empty() {
            out.push_str("\n## Charts\n\nIn `charts/` beside this file (SVG and PNG):\n\n");
            for (stem, title, _) in &charts {
                out.push_str(&format!("- [{}](charts/{stem}.svg)\n", cell(title)));
            }
        }
        Ok(out.into_bytes())
    }
}
