//! Exporters: pure functions from records to bytes, one file a format behind [`Exporter`].
//! Nothing here reads the clock or the hardware.

pub mod csv;
pub mod json;
pub mod table;

use std::path::Path;

use anyhow::Context;

use crate::results::Record;

/// Turns records into the bytes of one output format.
pub trait Exporter {
    /// The file's bytes.
    fn export(&self, records: &[Record]) -> anyhow::Result<Vec<u8>>;
}

/// The formats a run writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportType {
    /// `results.csv`: one row a cell, every column named with its unit.
    Csv,
    /// `results.json`: the records as one JSON array.
    Json,
}

impl ExportType {
    /// The file name in a run folder.
    pub fn file_name(self) -> &'static str {
        match self {
            ExportType::Csv => "results.csv",
            ExportType::Json => "results.json",
        }
    }

    fn exporter(self) -> Box<dyn Exporter> {
        match self {
            ExportType::Csv => Box::new(csv::CsvExporter),
            ExportType::Json => Box::new(json::JsonExporter),
        }
    }
}

/// Writes every format in `types` into `dir`.
pub fn export_all(records: &[Record], dir: &Path, types: &[ExportType]) -> anyhow::Result<()> {
    for t in types {
        let path = dir.join(t.file_name());
        let bytes = t.exporter().export(records)?;
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
