//! Quality against cost (energy per item, or median latency): one point per variant, the Pareto
//! front (no other point both cheaper and better) drawn through the points on it.

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

/// The chart of `records` (already one model, device and batch size) as SVG; `None` when fewer
/// than two cells have both figures.
pub fn pareto_svg(records: &[&Record], cost: Cost, title: &str) -> anyhow::Result<Option<String>> {
    let cells: Vec<(&Record, f64, f64)> = records
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter_map(|r| Some((*r, cost.of(r)?, r.quality.as_ref()?.value_pct)))
        .collect();
    if cells.len() < 2 {
        return Ok(None);
    }
    let x_max = cells.iter().map(|c| c.1).fold(0.0, f64::max);
    let (x0, x1) = bounds(cells.iter().map(|c| c.1), x_max * 0.02 + 1e-12);
    let (y0, y1) = bounds(cells.iter().map(|c| c.2), 0.5);
    let (x0, y1) = (x0.max(0.0), y1.min(100.5));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(cost.axis())
            .y_desc("accuracy (%)")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        let points: Vec<(f64, f64)> = cells.iter().map(|c| (c.1, c.2)).collect();
        let front: Vec<(f64, f64)> = pareto_front(&points)
            .into_iter()
            .map(|i| points[i])
            .collect();
        chart
            .draw_series(LineSeries::new(front, PALETTE[5].stroke_width(2)))
            .map_err(err)?
            .label("Pareto front")
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], PALETTE[5].stroke_width(2))
            });
        for (i, (_, x, y)) in cells.iter().enumerate() {
            let color = PALETTE[i % 5];
            let style = color.filled();
            match i % 3 {
                0 => chart.draw_series([Circle::new((*x, *y), 5, style)]),
                1 => chart.draw_series([TriangleMarker::new((*x, *y), 6, style)]),
                _ => chart.draw_series([Cross::new((*x, *y), 5, color.stroke_width(2))]),
            }
            .map_err(err)?;
        }
        let anchors: Vec<((i32, i32), String)> = cells
            .iter()
            .map(|(r, x, y)| (chart.backend_coord(&(*x, *y)), r.key.technique.clone()))
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
    }
    Ok(Some(svg))
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
