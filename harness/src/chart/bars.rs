//! Grouped bars per variant (one bar per batch size): mean latency per item and mean energy per
//! item, each with its 95% interval as an error bar (the statistic and interval the tables use);
//! peak memory; model size (one bar per variant: it does not depend on the batch); a language
//! model's tokens per second and energy per token of each phase. Per-item figures put every batch
//! size on one axis, in the unit that fits the values. The axis ends past the largest value that
//! is not a far outlier; a longer bar is cut at the edge with its value written there. The batch
//! key sits above the plot, off the data.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::labels::text_size;
use super::{err, Layout, PALETTE};
use crate::results::{Record, Status};
use crate::units::Scale;

/// What the bars show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarMetric {
    /// Mean latency per item, with the mean's 95% interval.
    Latency,
    /// Mean energy per item, with its 95% interval (the band where estimated).
    Energy,
    /// The model's peak resident memory during inference (the worker's whole peak for records
    /// that predate it).
    Memory,
    /// Model size as stored.
    Size,
    /// A language model's prompt tokens per second (prefill).
    PrefillRate,
    /// A language model's generated tokens per second (decode).
    DecodeRate,
    /// A language model's energy per prompt token (its energy per generated token is
    /// [`BarMetric::Energy`]: a generated token is its item).
    PrefillEnergy,
}

impl BarMetric {
    /// The axis title, with the unit `scale` gives: short, so that it fits under a phone's plot
    /// (the chart's title says the rest; the key says what the error bars are).
    pub fn axis(self, scale: Scale) -> String {
        let u = scale.unit;
        match self {
            BarMetric::Latency => format!("mean latency / item ({u})"),
            BarMetric::Energy => format!("mean energy / item ({u})"),
            BarMetric::Memory => format!("peak memory ({u})"),
            BarMetric::Size => format!("model size ({u})"),
            BarMetric::PrefillRate => "prompt tokens / s".into(),
            BarMetric::DecodeRate => "generated tokens / s".into(),
            BarMetric::PrefillEnergy => format!("energy / prompt token ({u})"),
        }
    }

    /// The value in its base unit (ms, J, bytes, tokens/s) and its 95% interval where it has one.
    fn value(self, r: &Record) -> Option<super::WithInterval> {
        match self {
            BarMetric::Latency => super::latency_per_item(r),
            BarMetric::Energy => super::energy_per_item(r),
            BarMetric::Memory => r.serving_memory_bytes().map(|b| (b as f64, None)),
            BarMetric::Size => r.model_bytes.map(|b| (b as f64, None)),
            BarMetric::PrefillRate => r
                .generation
                .as_ref()
                .map(|g| (g.prefill_tokens_per_s, None)),
            BarMetric::DecodeRate => r.generation.as_ref().map(|g| (g.decode_tokens_per_s, None)),
            BarMetric::PrefillEnergy => {
                r.generation.as_ref().map(|g| (g.prefill_j_per_token, None))
            }
        }
    }

    /// The unit for `values` (base unit).
    fn scale(self, values: &[f64]) -> Scale {
        match self {
            BarMetric::Latency => crate::units::time_ms(values),
            BarMetric::Energy | BarMetric::PrefillEnergy => crate::units::energy_j(values),
            BarMetric::Memory | BarMetric::Size => crate::units::bytes(values),
            BarMetric::PrefillRate | BarMetric::DecodeRate => Scale {
                unit: "tokens/s",
                factor: 1.0,
            },
        }
    }
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
        let technique = r.key.variant_label();
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
    let values: Vec<f64> = ok
        .iter()
        .filter_map(|r| metric.value(r).map(|v| v.0))
        .collect();
    let scale = metric.scale(&values);
    // The axis ends past the largest value that is not a far outlier, and past its interval;
    // longer bars and error bars are cut at the edge with their value written there.
    let robust_top = super::robust_range(&values).1;
    let ci_top = ok
        .iter()
        .filter_map(|r| metric.value(r))
        .filter(|(v, _)| *v <= robust_top)
        .filter_map(|(_, ci)| ci.map(|c| c.1))
        .filter(|v| v.is_finite())
        .fold(robust_top, f64::max);
    let top = scale.of(ci_top.max(robust_top) * 1.12);
    Some(BarsChart {
        rows: ok
            .iter()
            .map(|r| {
                let v = metric.value(r);
                (
                    r.key.variant_label(),
                    r.key.batch_size,
                    v.map(|v| scale.of(v.0)),
                    v.and_then(|v| v.1)
                        .map(|(lo, hi)| (scale.of(lo), scale.of(hi))),
                )
            })
            .collect(),
        techniques,
        batches,
        top,
        axis: metric.axis(scale),
        metric,
        title: title.to_string(),
    })
}

/// One cell's bar: (technique, batch size, value, its 95% interval), in the axis unit.
pub type BarRow = (String, usize, Option<f64>, Option<(f64, f64)>);

/// A bar chart ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct BarsChart {
    /// Per cell, in the axis unit.
    pub rows: Vec<BarRow>,
    /// Categories, top to bottom.
    pub techniques: Vec<String>,
    /// Batch sizes, one bar each.
    pub batches: Vec<usize>,
    /// End of the value axis, axis unit.
    pub top: f64,
    /// The value axis's title, with its unit.
    pub axis: String,
    /// What the bars show.
    pub metric: BarMetric,
    /// Caption.
    pub title: String,
}

impl BarsChart {
    /// Height of one bar's slot, pixels.
    fn slot_px(layout: Layout) -> u32 {
        layout.text() as u32 + 10
    }

    /// The chart's size at `layout`: a slot per bar, and room for the key, caption and axis.
    pub fn size(&self, layout: Layout) -> (u32, u32) {
        let bars = self.techniques.len() as u32 * self.batches.len().max(1) as u32;
        let chrome = super::title_height(&self.title, layout) + 40 + 4 * layout.text() as u32 + 20;
        (
            layout.width(),
            (chrome + bars * Self::slot_px(layout) + 8 * self.techniques.len() as u32).max(240),
        )
    }

    /// Draws the chart on `root`.
    pub fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        layout: Layout,
    ) -> anyhow::Result<()> {
        let text = layout.text();
        let (techniques, batches, metric, n) = (
            &self.techniques,
            &self.batches,
            self.metric,
            self.techniques.len() as f64,
        );
        // Bars start at 0; the end is bounded (a value near f64::MAX is not drawable).
        let top = super::bounded_axis(0.0, self.top.max(1e-9)).1;
        root.fill(&WHITE).map_err(err)?;
        let key_h = text_size("Xg", text).1 + 14;
        let below_title = super::titled(root, &self.title, layout)?;
        let (key_row, plot) = below_title.split_vertically(key_h);
        let mut x = 12;
        for (bi, batch) in batches.iter().enumerate() {
            let color = PALETTE[bi % PALETTE.len()];
            let label = if metric == BarMetric::Size {
                "every batch".to_string()
            } else {
                format!("batch {batch}")
            };
            key_row
                .draw(&Rectangle::new(
                    [(x, 6), (x + 12, 6 + text as i32 - 2)],
                    color.filled(),
                ))
                .map_err(err)?;
            key_row
                .draw(&Text::new(
                    label.clone(),
                    (x + 18, 4),
                    ("sans-serif", text).into_font().color(&BLACK),
                ))
                .map_err(err)?;
            x += 18 + text_size(&label, text).0 + 16;
        }
        if self.rows.iter().any(|r| r.3.is_some()) {
            let mid = 6 + (text as i32 - 2) / 2;
            key_row
                .draw(&PathElement::new(
                    vec![(x, mid), (x + 14, mid)],
                    BLACK.stroke_width(1),
                ))
                .map_err(err)?;
            for end in [x, x + 14] {
                key_row
                    .draw(&PathElement::new(
                        vec![(end, mid - 4), (end, mid + 4)],
                        BLACK.stroke_width(1),
                    ))
                    .map_err(err)?;
            }
            key_row
                .draw(&Text::new(
                    "95% interval",
                    (x + 20, 4),
                    ("sans-serif", text).into_font().color(&BLACK),
                ))
                .map_err(err)?;
        }
        let label_width = self
            .techniques
            .iter()
            .map(|t| text_size(t, text).0)
            .max()
            .unwrap_or(40)
            + 16;
        let mut chart = ChartBuilder::on(&plot)
            .margin(10)
            .x_label_area_size(text as i32 * 3)
            .y_label_area_size(label_width)
            .build_cartesian_2d(0.0..top, 0.0..n)
            .map_err(err)?;
        let names = self.techniques.clone();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(layout.ticks())
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
            .label_style(("sans-serif", text))
            .axis_desc_style(("sans-serif", text))
            .x_desc(self.axis.as_str())
            .draw()
            .map_err(err)?;
        let slot = 0.8 / batches.len() as f64;
        let bar = BLACK.stroke_width(1);
        for (bi, batch) in batches.iter().enumerate() {
            let color = PALETTE[bi % PALETTE.len()];
            for (ti, technique) in techniques.iter().enumerate() {
                let Some((_, _, Some(v), ci)) = self
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
                if let Some((lo, hi)) = ci {
                    let mid = (y0 + y1) / 2.0;
                    let (lo, hi) = (lo.clamp(0.0, top), hi.clamp(0.0, top));
                    let cap = slot * 0.3;
                    chart
                        .draw_series([
                            PathElement::new(vec![(lo, mid), (hi, mid)], bar),
                            PathElement::new(vec![(lo, mid - cap), (lo, mid + cap)], bar),
                            PathElement::new(vec![(hi, mid - cap), (hi, mid + cap)], bar),
                        ])
                        .map_err(err)?;
                }
                if v > top {
                    let label = format!("{} ->", crate::units::short(v));
                    let (lw, _) = text_size(&label, text);
                    let (px, py) = chart.backend_coord(&(top, y1));
                    let (_, lh) = text_size(&label, text);
                    // In the backend's pixels (`backend_coord`): drawn on `root`.
                    root.draw(&Rectangle::new(
                        [(px - lw - 6, py + 1), (px - 2, py + 1 + lh)],
                        WHITE.filled(),
                    ))
                    .map_err(err)?;
                    root.draw(&Text::new(
                        label,
                        (px - lw - 4, py + 1),
                        ("sans-serif", text).into_font().color(&BLACK),
                    ))
                    .map_err(err)?;
                }
            }
        }
        root.present().map_err(err)?;
        Ok(())
    }
}
