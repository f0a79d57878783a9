//! The one table model of the report and the console: [`Table`] (header and rows of text), which
//! the HTML and Markdown exporters and [`render_console`] render, and the results table's columns,
//! each defined once with where it is shown.

use super::numbers::{co2e, energy, opt, time, with_band};
use crate::analysis::energy_sources;
use crate::meter::DomainKind;
use crate::results::{Record, Status};
use crate::units::sig;

/// A table: header and rows of cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column titles.
    pub header: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<String>>,
}

/// Where a column of the results table is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// In the report (HTML, Markdown) only.
    InReport,
    /// In the report and the console table printed at the end of a run.
    Everywhere,
    /// In the console table only (a short form of a report column).
    OnConsole,
}

impl Shown {
    fn includes(self, wanted: Shown) -> bool {
        self == Shown::Everywhere || self == wanted
    }
}

/// One column of the results table: its title, where it is shown, and its text for a record.
struct Column {
    title: String,
    shown: Shown,
    value: Box<dyn Fn(&Record) -> String>,
}

fn column(title: &str, shown: Shown, value: impl Fn(&Record) -> String + 'static) -> Column {
    Column {
        title: title.to_string(),
        shown,
        value: Box::new(value),
    }
}

/// The first line of a record's error, without the status its text repeats.
fn status_text(r: &Record) -> String {
    match &r.error {
        Some(e) => {
            let first = e.lines().next().unwrap_or("");
            let first = first
                .strip_prefix("not applicable: ")
                .or_else(|| first.strip_prefix("not-applicable: "))
                .unwrap_or(first);
            format!(
                "{}: {}",
                r.status.as_str(),
                first.chars().take(80).collect::<String>()
            )
        }
        None => r.status.as_str().to_string(),
    }
}

/// The estimated power of a cell and the vCPUs it kept busy (estimate mode only): the CPU time
/// behind the estimate's CPU energy over the window.
fn estimated_power(r: &Record) -> Option<(f64, f64)> {
    let e = r.energy.as_ref()?;
    let params = e.estimate.as_ref()?;
    let cpu = e
        .domains
        .iter()
        .find(|d| d.kind == DomainKind::CpuEstimate)?;
    let busy = params.cpu_time_of(cpu.energy_j, e.window_s) / e.window_s.max(f64::MIN_POSITIVE);
    Some((e.mean_power_w, busy))
}

/// A record's fidelity (cosine to fp32, text models), 5 decimals, or `-`.
fn fidelity_text(r: &Record) -> String {
    opt(r.quality.as_ref().and_then(|q| q.fidelity), |f| {
        format!("{f:.5}")
    })
}

/// Every column of the results table in order, those no record fills left out (fidelity for runs
/// without text models, the estimate's power where energy was measured, FLOP rates where no model
/// counts its FLOPs, the share of peak where `slimbench calibrate` measured none).
fn result_columns(records: &[Record], measured: bool) -> Vec<Column> {
    use Shown::{Everywhere, InReport, OnConsole};
    let est = if measured { "" } else { " (estimated)" };
    let mut columns = vec![
        column("model", Everywhere, |r| r.key.model.clone()),
        column("technique", Everywhere, |r| r.key.technique.to_string()),
        column("device", Everywhere, |r| r.key.device.clone()),
    ];
    // A run on more than slimbench's own engine names each cell's.
    if records.iter().any(|r| !r.key.engine.is_default()) {
        columns.push(column("engine", Everywhere, |r| r.key.engine.to_string()));
    }
    columns.extend([
        column("batch", Everywhere, |r| r.key.batch_label()),
        column("status", InReport, status_text),
        column("status", OnConsole, |r| r.status.as_str().to_string()),
        column("accuracy %", Everywhere, |r| {
            opt(r.quality.as_ref().map(|q| q.value_pct), |v| {
                format!("{v:.2}")
            })
        }),
        column("change (points)", Everywhere, |r| {
            opt(r.quality.as_ref().map(|q| q.delta_points), |v| {
                format!("{v:+.2}")
            })
        }),
    ]);
    if records
        .iter()
        .any(|r| r.quality.as_ref().and_then(|q| q.fidelity).is_some())
    {
        columns.push(column(
            "fidelity (cosine to fp32)",
            Everywhere,
            fidelity_text,
        ));
    }
    columns.extend([
        column("size KiB", Everywhere, |r| {
            opt(r.model_bytes.map(|b| b as f64 / 1024.0), |v| sig(v, 3))
        }),
        column("mean / batch", InReport, |r| {
            opt(r.latency.as_ref().map(|l| l.mean_ms), time)
        }),
        column("p50 / batch", Everywhere, |r| {
            opt(r.latency.as_ref().map(|l| l.p50_ms), time)
        }),
        column("p99 / batch", Everywhere, |r| {
            opt(r.latency.as_ref().map(|l| l.p99_ms), time)
        }),
        column("items/s", Everywhere, |r| {
            opt(r.throughput_items_per_s, |v| sig(v, 3))
        }),
        column(&format!("energy / item{est}"), Everywhere, |r| {
            r.energy
                .as_ref()
                .map(|e| with_band(e.energy_per_item_j, e.band_factors(), energy))
                .unwrap_or_else(|| "-".into())
        }),
        column("energy source", Everywhere, |r| {
            r.energy
                .as_ref()
                .map(|e| e.source.clone())
                .unwrap_or_else(|| "-".into())
        }),
        column(&format!("CO2e / 1M items{est}"), InReport, |r| {
            r.carbon
                .as_ref()
                .map(|c| {
                    let band = r.energy.as_ref().and_then(|e| e.band_factors());
                    with_band(c.co2e_per_million_items_g, band, co2e)
                })
                .unwrap_or_else(|| "-".into())
        }),
        // A cell that never ran has no peak memory of its own to show.
        column("model peak MiB", Everywhere, |r| {
            opt(
                r.serving_memory_bytes()
                    .filter(|_| r.status == Status::Ok)
                    .map(|b| b as f64 / (1u64 << 20) as f64),
                |v| sig(v, 3),
            )
        }),
        // Rounds still disturbed of all rounds, and redone ones: `0/3` or `1/3 (+2)`.
        column("rounds disturbed (+redone)", Everywhere, |r| {
            r.disturbance_label().unwrap_or_else(|| "-".into())
        }),
    ]);
    if !measured {
        columns.push(column("power W (estimated)", InReport, |r| {
            opt(estimated_power(r).map(|p| p.0), |v| sig(v, 3))
        }));
        columns.push(column("vCPUs busy", InReport, |r| {
            opt(estimated_power(r).map(|p| p.1), |v| format!("{v:.2}"))
        }));
    }
    if records.iter().any(|r| r.compute.is_some()) {
        columns.push(column("GFLOP/s", Everywhere, |r| {
            opt(r.compute.as_ref().map(|c| c.achieved_gflops), |v| {
                format!("{v:.1}")
            })
        }));
    }
    // Against the machine's peak only where `slimbench calibrate` measured one.
    if records.iter().any(|r| {
        r.compute
            .as_ref()
            .is_some_and(|c| c.peak_fraction.is_some())
    }) {
        columns.push(column("% of calibrated peak", Everywhere, |r| {
            opt(r.compute.as_ref().and_then(|c| c.peak_fraction), |f| {
                format!("{:.1}", 100.0 * f)
            })
        }));
    }
    columns
}

/// The results table (one row a cell) with the columns shown `where_` (the report's or the
/// console's).
pub fn results_table(records: &[Record], measured: bool, where_: Shown) -> Table {
    let columns: Vec<Column> = result_columns(records, measured)
        .into_iter()
        .filter(|c| c.shown.includes(where_))
        .collect();
    Table {
        header: columns.iter().map(|c| c.title.clone()).collect(),
        rows: records
            .iter()
            .map(|r| columns.iter().map(|c| (c.value)(r)).collect())
            .collect(),
    }
}

/// The results table as console text: the console's columns, aligned (text columns left, figures
/// right), a rule under the header.
pub fn render_console(records: &[Record]) -> String {
    let (_, measured) = energy_sources(records);
    let table = results_table(records, measured, Shown::OnConsole);
    render_text(&table, 5)
}

/// `table` as aligned text; the first `left` columns are left-aligned, the rest right-aligned.
pub fn render_text(table: &Table, left: usize) -> String {
    let lines: Vec<&Vec<String>> = std::iter::once(&table.header).chain(&table.rows).collect();
    let widths: Vec<usize> = (0..table.header.len())
        .map(|c| {
            lines
                .iter()
                .map(|r| r.get(c).map_or(0, |v| v.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in lines.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (v, w))| {
                if c < left {
                    format!("{v:<w$}")
                } else {
                    format!("{v:>w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(
                &"-".repeat(widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1)),
            );
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostInfo;
    use slimbench_models::workload::Cell;

    fn record(error: Option<&str>) -> Record {
        let key = Cell::new("digits-mlp", "q8_0".parse().unwrap(), "cpu", 32);
        let host = HostInfo::fixture();
        let status = if error.is_some() {
            Status::Failed
        } else {
            Status::Ok
        };
        let mut r = Record::empty("run", key, host, status);
        r.error = error.map(String::from);
        r.latency = crate::stats::LatencyStats::from_samples(&[0.5, 0.6, 0.7]);
        r
    }

    #[test]
    fn the_console_and_the_report_read_one_column_list() {
        let records = [record(None), record(Some("out of memory\nbacktrace ..."))];
        let report = results_table(&records, true, Shown::InReport);
        let console = results_table(&records, true, Shown::OnConsole);
        // Shared columns have the same title and the same text in both.
        for (c, title) in console.header.iter().enumerate() {
            if let Some(rc) = report.header.iter().position(|t| t == title) {
                if title != "status" {
                    for (row, rrow) in console.rows.iter().zip(&report.rows) {
                        assert_eq!(row[c], rrow[rc], "{title}");
                    }
                }
            }
        }
        assert!(report.header.contains(&"mean / batch".to_string()));
        assert!(!console.header.contains(&"mean / batch".to_string()));
        assert_eq!(report.header.iter().filter(|t| *t == "status").count(), 1);
        assert_eq!(console.header.iter().filter(|t| *t == "status").count(), 1);
        // The report says why a cell failed; the console keeps to the status word.
        assert!(report.rows[1].contains(&"failed: out of memory".to_string()));
        assert!(console.rows[1].contains(&"failed".to_string()));
        let text = render_console(&records);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[1].chars().all(|c| c == '-'));
        assert!(lines[2].starts_with("digits-mlp  q8_0"), "{text}");
    }
}
