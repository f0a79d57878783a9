//! The power trace of one cell (from its `traces/<cell>.csv`): watts over time, one line per domain.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{err, PALETTE};

/// One parsed trace: domain name and its (time s, watts) points.
pub type Trace = Vec<(String, Vec<(f64, f64)>)>;

/// Parses `t_s,domain,source,watts` text; bad lines are skipped.
pub fn parse_trace(csv_text: &str) -> Trace {
    let mut out: Trace = Vec::new();
    for line in csv_text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 4 {
            continue;
        }
        let (Ok(t), Ok(w)) = (f[0].parse::<f64>(), f[3].parse::<f64>()) else {
            continue;
        };
        let name = format!("{} ({})", f[1], f[2]);
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, pts)) => pts.push((t, w)),
            None => out.push((name, vec![(t, w)])),
        }
    }
    out
}

/// A power-trace chart ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceChart {
    /// The lines.
    pub trace: Trace,
    /// Last time, s.
    pub t_max: f64,
    /// Highest power, W.
    pub w_max: f64,
    /// Caption.
    pub title: String,
}

/// The chart of `trace`; `None` when it has no points.
pub fn trace_chart(trace: Trace, title: &str) -> Option<TraceChart> {
    let all = trace.iter().flat_map(|(_, p)| p.iter());
    let t_max = all.clone().map(|p| p.0).fold(0.0, f64::max);
    let w_max = all.map(|p| p.1).fold(0.0, f64::max);
    (t_max > 0.0).then(|| TraceChart {
        trace,
        t_max,
        w_max,
        title: title.to_string(),
    })
}

/// Size of a trace chart in pixels.
pub const TRACE_SIZE: (u32, u32) = (560, 260);

impl TraceChart {
    /// Draws the chart on `root`.
    pub fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..self.t_max, 0.0..(self.w_max * 1.15).max(1e-6))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("power (W)")
            .draw()
            .map_err(err)?;
        for (i, (name, points)) in self.trace.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
        Ok(())
    }
}
