//! Quality against cost (energy per item, or median latency): one point per variant, the Pareto
//! front (no other point both cheaper and better) drawn through the points on it.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::labels::place;
use super::{err, PALETTE, SIZE};
use crate::results::{Record, Status};

/// The cost axis of a Pareto chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// Energy per item, mJ.
    Energy,
    /// Median latency per batch, ms.
    Latency,
}

impl Cost {
    fn of(self, r: &Record) -> Option<f64> {
        match self {
            Cost::Energy => r.energy.as_ref().map(|e| e.energy_per_item_j * 1e3),
            Cost::Latency => r.latency.as_ref().map(|l| l.p50_ms),
        }
    }

    fn axis(self) -> &'static str {
        match self {
            Cost::Energy => "energy per item (mJ)",
            Cost::Latency => "median latency per batch (ms)",
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

/// The axis range of `values` with a 12% margin (at least `min_pad`).
fn bounds(values: impl Iterator<Item = f64> + Clone, min_pad: f64) -> (f64, f64) {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.12).max(min_pad);
    (lo - pad, hi + pad)
}

/// A Pareto chart ready to draw: labelled points and the axis ranges.
#[derive(Debug, Clone, PartialEq)]
pub struct ParetoChart {
    /// (label, cost, quality) per variant.
    pub points: Vec<(String, f64, f64)>,
    /// Cost axis range.
    pub x: (f64, f64),
    /// Quality axis range.
    pub y: (f64, f64),
    /// The cost axis.
    pub cost: Cost,
    /// Caption.
    pub title: String,
}

/// The chart of `records` (already one model, device and batch size); `None` when fewer than two
/// cells have both figures.
pub fn pareto_chart(records: &[&Record], cost: Cost, title: &str) -> Option<ParetoChart> {
    let points: Vec<(String, f64, f64)> = records
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter_map(|r| {
            Some((
                r.key.technique.clone(),
                cost.of(r)?,
                r.quality.as_ref()?.value_pct,
            ))
        })
        .collect();
    if points.len() < 2 {
        return None;
    }
    let x_max = points.iter().map(|c| c.1).fold(0.0, f64::max);
    let (x0, x1) = bounds(points.iter().map(|c| c.1), x_max * 0.02 + 1e-12);
    let (y0, y1) = bounds(points.iter().map(|c| c.2), 0.5);
    Some(ParetoChart {
        points,
        x: (x0.max(0.0), x1),
        y: (y0, y1.min(100.5)),
        cost,
        title: title.to_string(),
    })
}

impl ParetoChart {
    /// Draws the chart on `root`.
    pub fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(60)
            .build_cartesian_2d(self.x.0..self.x.1, self.y.0..self.y.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(self.cost.axis())
            .y_desc("accuracy (%)")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        let xy: Vec<(f64, f64)> = self.points.iter().map(|c| (c.1, c.2)).collect();
        let front: Vec<(f64, f64)> = pareto_front(&xy).into_iter().map(|i| xy[i]).collect();
        chart
            .draw_series(LineSeries::new(front, PALETTE[5].stroke_width(2)))
            .map_err(err)?
            .label("Pareto front")
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], PALETTE[5].stroke_width(2))
            });
        for (i, (x, y)) in xy.iter().enumerate() {
            let color = PALETTE[i % 5];
            let style = color.filled();
            match i % 3 {
                0 => chart.draw_series([Circle::new((*x, *y), 5, style)]),
                1 => chart.draw_series([TriangleMarker::new((*x, *y), 6, style)]),
                _ => chart.draw_series([Cross::new((*x, *y), 5, color.stroke_width(2))]),
            }
            .map_err(err)?;
        }
        let anchors: Vec<((i32, i32), String)> = self
            .points
            .iter()
            .map(|(label, x, y)| (chart.backend_coord(&(*x, *y)), label.clone()))
            .collect();
        let (w, h) = SIZE;
        let positions = place(&anchors, 12, (70, 40, w as i32 - 10, h as i32 - 50));
        for ((_, text), pos) in anchors.iter().zip(positions) {
            root.draw(&Text::new(
                text.clone(),
                pos,
                ("sans-serif", 12).into_font().color(&BLACK),
            ))
            .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(err)?;
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
