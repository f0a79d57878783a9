//! Grouped bars per variant (one bar per batch size): latency per item (median, with p90 and p99
//! whiskers), energy per item, peak memory; model size (one bar per variant: it does not depend on
//! the batch); a language model's tokens per second and energy per token of each phase. Per-item
//! figures put every batch size on one axis. The axis ends past the largest
//! value that is not a far outlier; a longer bar is cut at the edge with its value written there.
//! The batch key sits above the plot, off the data.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{err, PALETTE, SIZE};
use crate::results::{Record, Status};
use crate::stats::LatencyStats;

/// What the bars show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarMetric {
    /// Median latency per batch, ms, with p90 and p99 whiskers.
    Latency,
    /// Energy per item, mJ.
    Energy,
    /// The model's peak resident memory during inference (the worker's whole peak for records
    /// that predate it), MiB.
    Memory,
    /// Model size as stored, KiB.
    Size,
    /// A language model's prompt tokens per second (prefill).
    PrefillRate,
    /// A language model's generated tokens per second (decode).
    DecodeRate,
    /// A language model's energy per prompt token, mJ (its energy per generated token is
    /// [`BarMetric::Energy`]: a generated token is its item).
    PrefillEnergy,
}

impl BarMetric {
    /// The axis title, with its unit.
    pub fn axis(self) -> &'static str {
        match self {
            BarMetric::Latency => "latency per item (ms): p50 bar, p90 thick tick, p99 whisker end",
            BarMetric::Energy => "energy per item (mJ)",
            BarMetric::Memory => "model's peak resident memory during inference (MiB)",
            BarMetric::Size => "model size (KiB)",
            BarMetric::PrefillRate => "prefill: prompt tokens per second",
            BarMetric::DecodeRate => "decode: generated tokens per second",
            BarMetric::PrefillEnergy => "prefill: energy per prompt token (mJ)",
        }
    }

    fn value(self, r: &Record) -> Option<f64> {
        match self {
            BarMetric::Latency => r.latency.as_ref().map(|l| l.p50_ms / per_item(r)),
            BarMetric::Energy => r.energy.as_ref().map(|e| e.energy_per_item_j * 1e3),
            BarMetric::Memory => r
                .serving_memory_bytes()
                .map(|b| b as f64 / (1u64 << 20) as f64),
            BarMetric::Size => r.model_bytes.map(|b| b as f64 / 1024.0),
            BarMetric::PrefillRate => r.generation.as_ref().map(|g| g.prefill_tokens_per_s),
            BarMetric::DecodeRate => r.generation.as_ref().map(|g| g.decode_tokens_per_s),
            BarMetric::PrefillEnergy => r.generation.as_ref().map(|g| g.prefill_j_per_token * 1e3),
        }
    }
}

/// The divisor from per-batch to per-item figures.
fn per_item(r: &Record) -> f64 {
    r.key.batch_size.max(1) as f64
}

/// The bar chart of `records` (one model and device); `None` without data.
pub fn bars_chart(records: &[&Record], metric: BarMetric, title: &str) -> Option<BarsChart> {
    let ok: Vec<&Record> = records
        .iter()
        .copied()
        .filter(|r| r.status == Status::Ok && metric.value(r).is_some())
        .collect();
    if ok.is_empty() {
        return None;
    }
    let mut techniques: Vec<String> = Vec::new();
    let mut batches: Vec<usize> = Vec::new();
    for r in &ok {
        let technique = r.key.technique.to_string();
        if !techniques.contains(&technique) {
            techniques.push(technique);
        }
        if !batches.contains(&r.key.batch_size) {
            batches.push(r.key.batch_size);
        }
    }
    batches.sort();
    if metric == BarMetric::Size {
        // The size of a variant is the same at every batch size: one bar.
        batches.truncate(1);
    }
    // The axis ends past the largest value that is not a far outlier (latency: 2.5 x, so that
    // whiskers show); longer bars and whiskers are cut at the edge with their value written there.
    let values: Vec<f64> = ok.iter().filter_map(|r| metric.value(r)).collect();
    let top = super::robust_range(&values).1
        * if metric == BarMetric::Latency {
            2.5
        } else {
            1.15
        };
    let height = SIZE
        .1
        .max(90 + 26 * techniques.len() as u32 * batches.len().max(1) as u32);
    Some(BarsChart {
        rows: ok
            .iter()
            .map(|r| {
                (
                    r.key.technique.to_string(),
                    r.key.batch_size,
                    metric.value(r),
                    r.latency.as_ref().map(|l| {
                        let d = per_item(r);
                        LatencyStats {
                            p50_ms: l.p50_ms / d,
                            p90_ms: l.p90_ms / d,
                            p99_ms: l.p99_ms / d,
                            ..l.clone()
                        }
                    }),
                )
            })
            .collect(),
        techniques,
        batches,
        top,
        size: (SIZE.0, height),
        metric,
        title: title.to_string(),
    })
}

/// A bar chart ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct BarsChart {
    /// (technique, batch size, value, latency statistics per item) per cell.
    pub rows: Vec<(String, usize, Option<f64>, Option<LatencyStats>)>,
    /// Categories, top to bottom.
    pub techniques: Vec<String>,
    /// Batch sizes, one bar each.
    pub batches: Vec<usize>,
    /// End of the value axis.
    pub top: f64,
    /// Pixels.
    pub size: (u32, u32),
    /// What the bars show.
    pub metric: BarMetric,
    /// Caption.
    pub title: String,
}

impl BarsChart {
    /// Draws the chart on `root`.
    pub fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let (techniques, batches, top, metric, title, n) = (
            &self.techniques,
            &self.batches,
            // Bars start at 0; the end is bounded (a value near f64::MAX times 2.5 is infinite).
            super::bounded_axis(0.0, self.top.max(1e-9)).1,
            self.metric,
            self.title.as_str(),
            self.techniques.len() as f64,
        );
        root.fill(&WHITE).map_err(err)?;
        let (key_row, plot) = root.split_vertically(24);
        for (bi, batch) in batches.iter().enumerate() {
            let x = 12 + 110 * bi as i32;
            let color = PALETTE[bi % PALETTE.len()];
            key_row
                .draw(&Rectangle::new([(x, 8), (x + 12, 18)], color.filled()))
                .map_err(err)?;
            let text = if metric == BarMetric::Size {
                "every batch".to_string()
            } else {
                format!("batch {batch}")
            };
            key_row
                .draw(&Text::new(
                    text,
                    (x + 16, 6),
                    ("sans-serif", 12).into_font().color(&BLACK),
                ))
                .map_err(err)?;
        }
        let label_width =
            self.techniques.iter().map(|t| t.len()).max().unwrap_or(4) as u32 * 7 + 16;
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(label_width)
            .build_cartesian_2d(0.0..top, 0.0..n)
            .map_err(err)?;
        let names = self.techniques.clone();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(techniques.len() * 2 + 1)
            .y_label_formatter(&|y| {
                let i = y.floor() as usize;
                // Categories run top to bottom: index 0 at the top.
                if (y - y.floor() - 0.5).abs() < 0.01 && i < names.len() {
                    names[names.len() - 1 - i].clone()
                } else {
                    String::new()
                }
            })
            .x_desc(metric.axis())
            .draw()
            .map_err(err)?;
        let slot = 0.8 / batches.len() as f64;
        for (bi, batch) in batches.iter().enumerate() {
            let color = PALETTE[bi % PALETTE.len()];
            for (ti, technique) in techniques.iter().enumerate() {
                let Some((_, _, Some(v), latency)) = self
                    .rows
                    .iter()
                    .find(|r| &r.0 == technique && r.1 == *batch)
                else {
                    continue;
                };
                let v = *v;
                let row = (techniques.len() - 1 - ti) as f64;
                let y1 = row + 0.9 - bi as f64 * slot;
                let y0 = y1 - slot * 0.9;
                chart
                    .draw_series([Rectangle::new(
                        [(0.0, y0), (v.min(top), y1)],
                        color.filled(),
                    )])
                    .map_err(err)?;
                if v > top {
                    chart
                        .draw_series([Text::new(
                            format!("{v:.3} ->"),
                            (top * 0.80, y1),
                            ("sans-serif", 10).into_font().color(&BLACK),
                        )])
                        .map_err(err)?;
                }
                if let (BarMetric::Latency, Some(l)) = (metric, latency.as_ref()) {
                    let mid = (y0 + y1) / 2.0;
                    let p90 = l.p90_ms.min(top);
                    let p99 = l.p99_ms.min(top);
                    chart
                        .draw_series([
                            PathElement::new(
                                vec![(l.p50_ms, mid), (p99, mid)],
                                BLACK.stroke_width(1),
                            ),
                            PathElement::new(
                                vec![(p99, mid - slot * 0.25), (p99, mid + slot * 0.25)],
                                BLACK.stroke_width(1),
                            ),
                            PathElement::new(
                                vec![(p90, mid - slot * 0.35), (p90, mid + slot * 0.35)],
                                BLACK.stroke_width(2),
                            ),
                        ])
                        .map_err(err)?;
                    if l.p99_ms > top {
                        chart
                            .draw_series([Text::new(
                                format!("p99 {:.2} ->", l.p99_ms),
                                (top * 0.86, y1),
                                ("sans-serif", 9).into_font().color(&BLACK),
                            )])
                            .map_err(err)?;
                    }
                }
            }
        }
        root.present().map_err(err)?;
        Ok(())
    }
}
