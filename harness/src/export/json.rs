//! The records as one pretty-printed JSON array.

use super::Exporter;
use crate::analysis::RunData;

/// Writes `results.json`.
pub struct JsonExporter;

impl Exporter for JsonExporter {
    fn export(&self, data: &RunData) -> anyhow::Result<Vec<u8>> {
        let mut bytes = serde_json::to_vec_pretty(&data.records)?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}
