//! Exporters: pure functions from records to bytes, one file a format behind [`Exporter`].
//! Nothing here reads the clock or the hardware.

pub mod csv;
pub mod emissions;
pub mod html;
pub mod json;
pub mod markdown;
pub mod method;
pub mod numbers;
pub mod sections;
pub mod table;

use std::path::Path;

use anyhow::Context;

use crate::analysis::RunData;

/// Turns a run into the bytes of one output format.
pub trait Exporter {
    /// The file's bytes.
    fn export(&self, data: &RunData) -> anyhow::Result<Vec<u8>>;
}

/// The formats a run writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportType {
    /// `results.csv`: one row a cell, every column named with its unit.
    Csv,
    /// `results.json`: the records as one JSON array.
    Json,
    /// `report.md`: the sustainability report in Markdown.
    Markdown,
    /// `report.html`: the self-contained sustainability report with charts.
    Html,
    /// `emissions.csv`: CodeCarbon's layout.
    Emissions,
}

/// Every format, in the order they are written.
pub const ALL_EXPORTS: [ExportType; 5] = [
    ExportType::Csv,
    ExportType::Json,
    ExportType::Markdown,
    ExportType::Html,
    ExportType::Emissions,
];

impl ExportType {
    /// The file name in a run folder.
    pub fn file_name(self) -> &'static str {
        match self {
            ExportType::Csv => "results.csv",
            ExportType::Json => "results.json",
            ExportType::Markdown => "report.md",
            ExportType::Html => "report.html",
            ExportType::Emissions => "emissions.csv",
        }
    }

    fn exporter(self) -> Box<dyn Exporter> {
        match self {
            ExportType::Csv => Box::new(csv::CsvExporter),
            ExportType::Json => Box::new(json::JsonExporter),
            ExportType::Markdown => Box::new(markdown::MarkdownExporter),
            ExportType::Html => Box::new(html::HtmlExporter),
            ExportType::Emissions => Box::new(emissions::EmissionsExporter),
        }
    }
}

/// Writes every format in `types` into `dir`, and with the HTML report each chart as
/// `charts/<name>.svg` and `charts/<name>.png`, each file whole or not at all (see
/// [`crate::atomic`]): an interrupted or disk-full export leaves the earlier complete files.
pub fn export_all(data: &RunData, dir: &Path, types: &[ExportType]) -> anyhow::Result<()> {
    for t in types {
        let path = dir.join(t.file_name());
        let bytes = t.exporter().export(data)?;
        crate::atomic::write(&path, &bytes)?;
    }
    if types.contains(&ExportType::Html) {
        let charts_dir = dir.join("charts");
        std::fs::create_dir_all(&charts_dir)
            .with_context(|| format!("cannot create {}", charts_dir.display()))?;
        for (stem, _, chart) in html::charts(data) {
            let path = charts_dir.join(format!("{stem}.svg"));
            crate::atomic::write(&path, chart.svg(crate::chart::Layout::Wide)?.as_bytes())?;
            let png = charts_dir.join(format!("{stem}.png"));
            crate::atomic::replace_with(&png, |tmp| chart.png(tmp))?;
        }
    }
    Ok(())
}
