//! The comparison as a Markdown table, fit for a CI job summary.

use super::{Comparison, Metric};

fn figure(metric: Metric, v: f64) -> String {
    match metric {
        Metric::Latency => format!("{v:.4} ms"),
        Metric::Energy => format!("{v:.3e} J"),
        Metric::Memory | Metric::Size => format!("{:.1} KiB", v / 1024.0),
        Metric::Quality => format!("{v:.2}%"),
    }
}

/// The comparison as a Markdown table, fit for a CI job summary.
pub fn markdown(c: &Comparison) -> String {
    let mut out = String::from("## slimbench compare\n\n");
    let regressed = c
        .cells
        .iter()
        .filter(|cell| cell.changes.iter().any(|m| m.regressed))
        .count();
    let unconfirmed = c
        .cells
        .iter()
        .flat_map(|cell| &cell.changes)
        .filter(|m| m.confirmation.is_some_and(|k| !k.regressed))
        .count();
    let unconfirmed = if unconfirmed > 0 {
        format!(" ({unconfirmed} flagged changes not reproduced by the confirmation run)")
    } else {
        String::new()
    };
    out.push_str(&format!(
        "**{}**: {} cells compared, {regressed} regressed{unconfirmed}, {} lost (measured in the baseline, failed or missing now), {} only in baseline, {} only in current.\n\n",
        if c.regressed() { "REGRESSION" } else { "OK" },
        c.cells.len(),
        c.lost.len(),
        c.only_baseline.len(),
        c.only_current.len()
    ));
    out.push_str(
        "| cell | metric | baseline | current | change | 95% CI | threshold | verdict |\n",
    );
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for cell in &c.cells {
        for m in &cell.changes {
            let unit = m.metric.change_unit();
            let ci = m
                .ci95
                .map(|i| format!("[{:+.2}, {:+.2}] {unit}", i.lo, i.hi))
                .unwrap_or_else(|| "-".into());
            let threshold = if m.metric == Metric::Quality {
                format!("-{} {unit}", m.threshold)
            } else {
                format!("+{}{unit}", m.threshold)
            };
            let (shown, base, cur) = if m.relative {
                let what = if m.metric == Metric::Latency {
                    "speed-up"
                } else {
                    "energy ratio"
                };
                (
                    format!("{} ({what} vs own fp32)", m.metric.name()),
                    format!("{:.3}x", m.baseline),
                    format!("{:.3}x", m.current),
                )
            } else {
                (
                    m.metric.name().to_string(),
                    figure(m.metric, m.baseline),
                    figure(m.metric, m.current),
                )
            };
            let verdict = match (&m.confirmation, m.regressed) {
                (Some(k), true) => format!(
                    "**regressed** (confirmed: second run {:+.2} {unit})",
                    k.change
                ),
                (Some(k), false) => format!(
                    "ok (not reproduced: second run {:+.2} {unit}{})",
                    k.change,
                    k.ci95
                        .map(|i| format!(", [{:+.2}, {:+.2}]", i.lo, i.hi))
                        .unwrap_or_default()
                ),
                (None, true) => "**regressed**".to_string(),
                (None, false) => "ok".to_string(),
            };
            out.push_str(&format!(
                "| {} | {shown} | {base} | {cur} | {:+.2} {unit} | {ci} | {threshold} | {verdict} |\n",
                cell.cell, m.change,
            ));
        }
    }
    if !c.lost.is_empty() {
        out.push_str("\nLost, each a **regression** (measured in the baseline):\n");
        for l in &c.lost {
            out.push_str(&format!("- {}: {}\n", l.cell, l.why));
        }
    }
    for (title, list) in [
        ("Only in the baseline (missing now)", &c.only_baseline),
        ("Only in the current set (new)", &c.only_current),
    ] {
        if !list.is_empty() {
            out.push_str(&format!("\n{title}:\n"));
            for cell in list {
                out.push_str(&format!("- {cell}\n"));
            }
        }
    }
    out
}
