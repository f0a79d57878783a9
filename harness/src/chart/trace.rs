//! The power trace of one cell (from its `traces/<cell>.csv`): watts over time, one line per domain
//! that drew any power, on the y-scale shared by every trace of the run, with the timed window
//! shaded (the idle window before it is not). An estimated domain (its source `estimated-...`) is
//! drawn dashed and labelled ESTIMATED: it is CPU time times coefficients, not a measurement.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{err, Layout, PALETTE};

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
    /// The lines (domains that never drew power left out).
    pub trace: Trace,
    /// Last time, s.
    pub t_max: f64,
    /// Top of the power axis, W: the highest power of every trace of the run, so traces compare.
    pub w_max: f64,
    /// The timed window, s from the start, shaded.
    pub timed: Option<(f64, f64)>,
    /// Caption.
    pub title: String,
}

/// The highest power in `trace`, W.
pub fn peak_watts(trace: &Trace) -> f64 {
    trace
        .iter()
        .flat_map(|(_, p)| p.iter())
        .map(|p| p.1)
        .fold(0.0, f64::max)
}

/// The chart of `trace` on a power axis up to `run_w_max` (the run's highest power), with the
/// last `timed_window_s` seconds shaded as the timed window; `None` when it has no points.
pub fn trace_chart(
    trace: Trace,
    title: &str,
    run_w_max: f64,
    timed_window_s: Option<f64>,
) -> Option<TraceChart> {
    let trace: Trace = trace
        .into_iter()
        .filter(|(_, p)| p.iter().any(|(_, w)| *w > 0.0))
        .collect();
    let t_max = trace
        .iter()
        .flat_map(|(_, p)| p.iter())
        .map(|p| p.0)
        .fold(0.0, f64::max);
    let w_max = run_w_max.max(peak_watts(&trace));
    (t_max > 0.0).then(|| TraceChart {
        trace,
        t_max,
        w_max,
        timed: timed_window_s.map(|w| ((t_max - w).max(0.0), t_max)),
        title: title.to_string(),
    })
}

/// Height of a trace chart's plot at `layout`, pixels (its title goes above).
pub fn plot_height(layout: Layout) -> u32 {
    layout.width() / 2 + 60
}

impl TraceChart {
    /// Draws the chart on `root`.
    pub fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        layout: Layout,
    ) -> anyhow::Result<()> {
        let text = layout.text();
        root.fill(&WHITE).map_err(err)?;
        let plot = super::titled(root, &self.title, layout)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(8)
            .x_label_area_size(text as i32 * 3)
            .y_label_area_size(text as i32 * 4)
            // Headroom above the run's highest power: the legend sits there, off the lines.
            .build_cartesian_2d(
                {
                    let (t0, t1) = super::bounded_axis(0.0, self.t_max);
                    t0..t1
                },
                {
                    let (w0, w1) = super::bounded_axis(0.0, (self.w_max * 1.6).max(1e-6));
                    w0..w1
                },
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("power (W)")
            .x_labels(layout.ticks())
            .y_labels(layout.ticks())
            .label_style(("sans-serif", text))
            .axis_desc_style(("sans-serif", text))
            .draw()
            .map_err(err)?;
        if let Some((t0, t1)) = self.timed {
            chart
                .draw_series([Rectangle::new(
                    [(t0, 0.0), (t1, self.w_max * 1.6)],
                    PALETTE[4].mix(0.25).filled(),
                )])
                .map_err(err)?
                .label("timed window")
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], PALETTE[4].mix(0.5).filled())
                });
        }
        for (i, (name, points)) in self.trace.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let peak = points.iter().map(|p| p.1).fold(0.0, f64::max);
            if peak < 0.01 * self.w_max {
                // Under 1% of the scale a line would lie on the axis: named, not drawn.
                chart
                    .draw_series(LineSeries::new(Vec::<(f64, f64)>::new(), color))
                    .map_err(err)?
                    .label(format!("{name}: under {peak:.2} W, not drawn"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(1))
                    });
                continue;
            }
            if name.contains("(estimated") {
                chart
                    .draw_series(DashedLineSeries::new(
                        points.clone(),
                        6,
                        4,
                        color.stroke_width(2),
                    ))
                    .map_err(err)?
                    .label(format!("{name}: ESTIMATED, not measured"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 7, y)], color.stroke_width(2))
                    });
                continue;
            }
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
            .label_font(("sans-serif", text))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
        Ok(())
    }
}
