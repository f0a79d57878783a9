//! The console table printed at the end of a run: one row a cell, the figures a reader compares.

use crate::results::{Record, Status};

/// True when some record has an embedding fidelity (text models): the tables then show it.
pub fn any_fidelity(records: &[Record]) -> bool {
    records
        .iter()
        .any(|r| r.quality.as_ref().and_then(|q| q.fidelity).is_some())
}

/// A fidelity for a table cell: 5 decimals, or `-`.
pub fn fidelity_text(r: &Record) -> String {
    r.quality
        .as_ref()
        .and_then(|q| q.fidelity)
        .map(|f| format!("{f:.5}"))
        .unwrap_or_else(|| "-".into())
}

/// True when some record counts its FLOPs: the tables then show GFLOP/s and the share of peak.
pub fn any_compute(records: &[Record]) -> bool {
    records.iter().any(|r| r.compute.is_some())
}

/// Achieved GFLOP/s for a table cell, or `-`.
pub fn gflops_text(r: &Record) -> String {
    r.compute
        .as_ref()
        .map(|c| format!("{:.1}", c.achieved_gflops))
        .unwrap_or_else(|| "-".into())
}

/// The fraction of the calibrated peak as a percentage, or `-` (not calibrated, or a GPU cell).
pub fn peak_text(r: &Record) -> String {
    r.compute
        .as_ref()
        .and_then(|c| c.peak_fraction)
        .map(|f| format!("{:.1}", 100.0 * f))
        .unwrap_or_else(|| "-".into())
}

fn cell_text(r: &Record) -> Vec<String> {
    let q = r.quality.as_ref();
    let l = r.latency.as_ref();
    let e = r.energy.as_ref();
    let dash = || "-".to_string();
    vec![
        r.key.model.clone(),
        r.key.technique.to_string(),
        r.key.device.clone(),
        r.key.batch_label(),
        r.status.as_str().to_string(),
        q.map(|q| format!("{:.2}", q.value_pct))
            .unwrap_or_else(dash),
        q.map(|q| format!("{:+.2}", q.delta_points))
            .unwrap_or_else(dash),
        r.model_bytes
            .map(|b| format!("{:.1}", b as f64 / 1024.0))
            .unwrap_or_else(dash),
        l.map(|l| format!("{:.4}", l.p50_ms)).unwrap_or_else(dash),
        l.map(|l| format!("{:.4}", l.p99_ms)).unwrap_or_else(dash),
        r.throughput_items_per_s
            .map(|t| format!("{t:.0}"))
            .unwrap_or_else(dash),
        e.map(|e| format!("{:.3e}", e.energy_per_item_j))
            .unwrap_or_else(dash),
        e.map(|e| e.source.clone()).unwrap_or_else(dash),
        // A cell that never ran has no peak memory of its own to show.
        r.serving_memory_bytes()
            .filter(|_| r.status == Status::Ok)
            .map(|b| format!("{:.1}", b as f64 / (1024.0 * 1024.0)))
            .unwrap_or_else(dash),
        // Rounds still disturbed of all rounds, and redone ones: `0/3` or `1/3 (+2)`.
        r.disturbance_label().unwrap_or_else(dash),
    ]
}

/// The table as text, columns aligned, with units in the header.
pub fn render(records: &[Record]) -> String {
    let header: Vec<String> = [
        "model",
        "technique",
        "device",
        "batch",
        "status",
        "acc_%",
        "d_pts",
        "size_KiB",
        "p50_ms",
        "p99_ms",
        "items/s",
        "J/item",
        "energy_source",
        "model_peak_MiB",
        "disturbed",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut rows: Vec<Vec<String>> = std::iter::once(header)
        .chain(records.iter().map(cell_text))
        .collect();
    if any_fidelity(records) {
        rows[0].insert(7, "fidelity".into());
        for (row, r) in rows[1..].iter_mut().zip(records) {
            row.insert(7, fidelity_text(r));
        }
    }
    if any_compute(records) {
        rows[0].extend(["GFLOP/s".to_string(), "%peak".to_string()]);
        for (row, r) in rows[1..].iter_mut().zip(records) {
            row.extend([gflops_text(r), peak_text(r)]);
        }
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (v, w))| {
                if c < 5 {
                    format!("{v:<w$}")
                } else {
                    format!("{v:>w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            out.push('\n');
        }
    }
    out
}
