//! Quality (the record's metric, or a language model's KL divergence from its reference) against
//! cost (energy per item, or mean latency per item): one numbered point per variant, the baseline
//! a black square, the Pareto front (no other point both cheaper and better) in orange through
//! its points, far outliers at the axis edge as triangles; the key beside the plot names every
//! number, so no label sits on the data.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::labels::place;
use super::{draw_key, err, PALETTE, SIZE};
use crate::results::{Record, Status};

/// The cost axis of a Pareto chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// Energy per item, mJ.
    Energy,
    /// Mean latency per item, ms (the statistic energy per item shares).
    Latency,
}

impl Cost {
    fn of(self, r: &Record) -> Option<f64> {
        match self {
            Cost::Energy => r.energy.as_ref().map(|e| e.energy_per_item_j * 1e3),
            Cost::Latency => r
                .latency
                .as_ref()
                .map(|l| l.mean_ms / r.key.batch_size.max(1) as f64),
        }
    }

    fn axis(self) -> &'static str {
        match self {
            Cost::Energy => "energy per item (mJ)",
            Cost::Latency => "mean latency per item (ms)",
        }
    }
}

/// The quality axis of a Pareto chart (up is better on both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// The record's quality metric in percent (accuracy, spam accuracy, top-1 agreement).
    Metric,
    /// A language model's mean KL divergence from the reference, negated so that up is better.
    KlDivergence,
}

impl Quality {
    fn of(self, r: &Record) -> Option<f64> {
        let q = r.quality.as_ref()?;
        match self {
            Quality::Metric => Some(q.value_pct),
            Quality::KlDivergence => q.language.as_ref().map(|l| -l.kld_mean),
        }
    }

    /// What the axis measures, for titles: the records' metric (`accuracy` when none says), or
    /// `KL divergence`.
    pub fn name(self, records: &[&Record]) -> String {
        match self {
            Quality::Metric => records
                .iter()
                .find_map(|r| r.quality.as_ref().map(|q| q.metric.clone()))
                .unwrap_or_else(|| "accuracy".into()),
            Quality::KlDivergence => "KL divergence".into(),
        }
    }

    fn axis(self, records: &[&Record]) -> String {
        match self {
            Quality::Metric => format!("{} (%)", self.name(records)),
            Quality::KlDivergence => "- mean KL divergence from the reference (nats)".into(),
        }
    }
}

/// Indices of the points on the Pareto front of (cost, quality), cost ascending.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        points[a]
            .0
            .total_cmp(&points[b].0)
            .then(points[b].1.total_cmp(&points[a].1))
    });
    let mut front = Vec::new();
    let mut best_quality = f64::NEG_INFINITY;
    for i in order {
        if points[i].1 > best_quality {
            best_quality = points[i].1;
            front.push(i);
        }
    }
    front
}

/// A Pareto chart ready to draw: numbered points, the axis ranges, and the points outside them.
#[derive(Debug, Clone, PartialEq)]
pub struct ParetoChart {
    /// (technique, cost, quality) per variant; the baseline first when measured.
    pub points: Vec<(String, f64, f64)>,
    /// Cost axis range.
    pub x: (f64, f64),
    /// Quality axis range.
    pub y: (f64, f64),
    /// The cost axis.
    pub cost: Cost,
    /// The quality axis.
    pub quality: Quality,
    /// The quality axis's title.
    pub quality_axis: String,
    /// Caption.
    pub title: String,
}

fn padded((lo, hi): (f64, f64), min_pad: f64) -> (f64, f64) {
    let pad = ((hi - lo) * 0.12).max(min_pad);
    (lo - pad, hi + pad)
}

/// The chart of `records` (already one model, device and batch size); `None` when fewer than two
/// cells have both figures. The axes cover every point but far outliers (see
/// [`super::robust_range`]), which are drawn at the edge and marked.
pub fn pareto_chart(
    records: &[&Record],
    cost: Cost,
    quality: Quality,
    title: &str,
) -> Option<ParetoChart> {
    let mut points: Vec<(String, f64, f64)> = records
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter_map(|r| Some((r.key.technique.to_string(), cost.of(r)?, quality.of(r)?)))
        .collect();
    if points.len() < 2 {
        return None;
    }
    // The baseline first: number 1 in every chart.
    points.sort_by_key(|p| p.0 != slimbench_models::technique::BASELINE);
    let xs: Vec<f64> = points.iter().map(|p| p.1).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.2).collect();
    let x_range = super::robust_range(&xs);
    let (x0, x1) = padded(x_range, x_range.1 * 0.02 + 1e-12);
    let y = match quality {
        Quality::Metric => {
            let (y0, y1) = padded(super::robust_range(&ys), 0.5);
            (y0, y1.min(100.5))
        }
        Quality::KlDivergence => padded(super::robust_range(&ys), 1e-4),
    };
    Some(ParetoChart {
        points,
        x: super::bounded_axis(x0.max(0.0), x1),
        y: super::bounded_axis(y.0, y.1),
        cost,
        quality,
        quality_axis: quality.axis(records),
        title: title.to_string(),
    })
}

/// Width of the key beside the plot, pixels.
const KEY_WIDTH: u32 = 250;

impl ParetoChart {
    /// The point as drawn: clamped into the axes, and whether it was outside.
    fn drawn_at(&self, x: f64, y: f64) -> ((f64, f64), bool) {
        let (x0, x1) = super::bounded_axis(self.x.0, self.x.1);
        let (y0, y1) = super::bounded_axis(self.y.0, self.y.1);
        let cx = if x.is_nan() { x0 } else { x.clamp(x0, x1) };
        let cy = if y.is_nan() { y0 } else { y.clamp(y0, y1) };
        ((cx, cy), cx != x || cy != y)
    }

    /// Draws the chart on `root`: the plot on the left, the numbered key on the right.
    pub fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        root.fill(&WHITE).map_err(err)?;
        let (plot_area, key_area) = root.split_horizontally(SIZE.0 - KEY_WIDTH);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(&self.title, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(60)
            .build_cartesian_2d(
                {
                    let (x0, x1) = super::bounded_axis(self.x.0, self.x.1);
                    x0..x1
                },
                {
                    let (y0, y1) = super::bounded_axis(self.y.0, self.y.1);
                    y0..y1
                },
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(self.cost.axis())
            .y_desc(self.quality_axis.as_str())
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        let xy: Vec<(f64, f64)> = self.points.iter().map(|c| (c.1, c.2)).collect();
        let front_idx = pareto_front(&xy);
        let front: Vec<(f64, f64)> = front_idx
            .iter()
            .map(|&i| self.drawn_at(xy[i].0, xy[i].1).0)
            .collect();
        chart
            .draw_series(LineSeries::new(front, PALETTE[1].stroke_width(2)))
            .map_err(err)?;
        let mut anchors = Vec::new();
        for (i, (label, x, y)) in self.points.iter().enumerate() {
            let (at, outside) = self.drawn_at(*x, *y);
            let baseline = label == slimbench_models::technique::BASELINE;
            let on_front = front_idx.contains(&i);
            if baseline {
                let (px, py) = chart.backend_coord(&at);
                plot_area
                    .draw(&Rectangle::new(
                        [(px - 6, py - 6), (px + 6, py + 6)],
                        BLACK.filled(),
                    ))
                    .map_err(err)?;
            } else if outside {
                let (px, py) = chart.backend_coord(&at);
                plot_area
                    .draw(&TriangleMarker::new((px, py), 7, PALETTE[3].filled()))
                    .map_err(err)?;
            } else {
                let style = if on_front {
                    PALETTE[1].filled()
                } else {
                    PALETTE[0].filled()
                };
                chart
                    .draw_series([Circle::new(at, if on_front { 6 } else { 4 }, style)])
                    .map_err(err)?;
            }
            anchors.push((chart.backend_coord(&at), (i + 1).to_string()));
        }
        let (w, h) = (SIZE.0 - KEY_WIDTH, SIZE.1);
        let positions = place(&anchors, 12, (64, 30, w as i32 - 12, h as i32 - 44));
        for ((_, text), pos) in anchors.iter().zip(positions) {
            plot_area
                .draw(&Text::new(
                    text.clone(),
                    pos,
                    ("sans-serif", 12).into_font().color(&BLACK),
                ))
                .map_err(err)?;
        }
        let entries: Vec<String> = self
            .points
            .iter()
            .enumerate()
            .map(|(i, (label, x, y))| {
                let mut text = format!("{} {label}", i + 1);
                if label == slimbench_models::technique::BASELINE {
                    text.push_str(" (baseline)");
                }
                if slimbench_models::technique::is_control(label) {
                    text.push_str(" (control)");
                }
                if *y < self.y.0 || *y > self.y.1 {
                    text.push_str(&match self.quality {
                        Quality::Metric => format!(" (off scale: {y:.1}%)"),
                        Quality::KlDivergence => format!(" (off scale: KL {:.3})", -y),
                    });
                } else if *x < self.x.0 || *x > self.x.1 {
                    text.push_str(&format!(" (off scale: {x:.3})"));
                }
                text
            })
            .collect();
        let front_idx2 = front_idx.clone();
        draw_key(
            &key_area,
            "points (orange: Pareto front)",
            &entries,
            |area, i, (x, y)| {
                let baseline = self.points[i].0 == slimbench_models::technique::BASELINE;
                let color = if baseline {
                    BLACK
                } else if self.drawn_at(self.points[i].1, self.points[i].2).1 {
                    PALETTE[3]
                } else if front_idx2.contains(&i) {
                    PALETTE[1]
                } else {
                    PALETTE[0]
                };
                area.draw(&Circle::new((x, y), 5, color.filled()))
                    .map_err(err)?;
                Ok(())
            },
        )?;
        root.present().map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_keeps_only_undominated_points() {
        let pts = [
            (1.0, 90.0),
            (2.0, 95.0),
            (3.0, 94.0),
            (0.5, 80.0),
            (2.5, 97.0),
        ];
        assert_eq!(pareto_front(&pts), vec![3, 0, 1, 4]);
    }
}
