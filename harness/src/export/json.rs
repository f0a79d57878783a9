//! The records as one pretty-printed JSON array.

use super::Exporter;
use crate::results::Record;

/// Writes `results.json`.
pub struct JsonExporter;

impl Exporter for JsonExporter {
    fn export(&self, records: &[Record]) -> anyhow::Result<Vec<u8>> {
        let mut bytes = serde_json::to_vec_pretty(records)?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}
