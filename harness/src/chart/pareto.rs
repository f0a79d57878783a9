//! Quality (the record's metric, or a language model's KL divergence from its reference) against
//! cost (mean energy per item, or mean latency per item, in units scaled to the values): one point
//! per variant with its 95% intervals as error bars on both axes where it has them, each point
//! labelled with its technique's name where there is room. Shapes and colours tell the baseline
//! (black square), the Pareto front (orange circles joined by a line), the rest (navy circles),
//! control arms (purple diamonds) and the recommended variant (a ring); the legend under the plot
//! names the techniques of each kind. The quality axis always shows the baseline's interval and
//! the quality budget around the baseline, so a tie never looks like a drop.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::labels::{place, text_size, LabelBox};
use super::{err, Layout, WithInterval, PALETTE};
use crate::results::{Record, Status};
use crate::units::Scale;

/// The cost axis of a Pareto chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// Mean energy per item, J (drawn in the unit that fits).
    Energy,
    /// Mean latency per item, ms (drawn in the unit that fits; the statistic energy per item
    /// shares).
    Latency,
}

impl Cost {
    /// The cost in its base unit and its 95% interval: latency from the mean's interval; energy
    /// from the estimate's band where estimated (the table's band), else the record's relative
    /// uncertainty ([`crate::analysis::compare::energy_rel_uncertainty`]).
    fn of(self, r: &Record) -> Option<WithInterval> {
        match self {
            Cost::Energy => super::energy_per_item(r),
            Cost::Latency => super::latency_per_item(r),
        }
    }

    fn scale(self, values: &[f64]) -> Scale {
        match self {
            Cost::Energy => crate::units::energy_j(values),
            Cost::Latency => crate::units::time_ms(values),
        }
    }

    fn axis(self, scale: Scale) -> String {
        match self {
            Cost::Energy => format!("mean energy / item ({})", scale.unit),
            Cost::Latency => format!("mean latency / item ({})", scale.unit),
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
    /// The value and its 95% interval (Wilson's, over the record's items; none for KL).
    fn of(self, r: &Record) -> Option<WithInterval> {
        let q = r.quality.as_ref()?;
        match self {
            Quality::Metric => Some((
                q.value_pct,
                crate::stats::wilson_interval_pct(q.value_pct, q.items).map(|i| (i.lo, i.hi)),
            )),
            Quality::KlDivergence => q.language.as_ref().map(|l| (-l.kld_mean, None)),
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
            Quality::KlDivergence => "- mean KL divergence (nats)".into(),
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

/// One variant on the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct ParetoPoint {
    /// The technique.
    pub technique: String,
    /// Cost in the axis unit.
    pub cost: f64,
    /// The cost's 95% interval, axis unit.
    pub cost_ci: Option<(f64, f64)>,
    /// Quality (percent, or minus KL divergence).
    pub quality: f64,
    /// The quality's 95% interval.
    pub quality_ci: Option<(f64, f64)>,
    /// The uncompressed baseline.
    pub baseline: bool,
    /// A control arm: never recommended.
    pub control: bool,
    /// The report's recommendation for this setting.
    pub pick: bool,
}

/// A Pareto chart ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct ParetoChart {
    /// One point per variant; the baseline first when measured.
    pub points: Vec<ParetoPoint>,
    /// Cost axis range, axis unit.
    pub x: (f64, f64),
    /// Quality axis range.
    pub y: (f64, f64),
    /// The cost axis's title, with its unit.
    pub cost_axis: String,
    /// The quality axis.
    pub quality: Quality,
    /// The quality axis's title.
    pub quality_axis: String,
    /// Caption.
    pub title: String,
}

fn padded((lo, hi): (f64, f64), min_pad: f64) -> (f64, f64) {
    let pad = ((hi - lo) * 0.08).max(min_pad);
    (lo - pad, hi + pad)
}

/// The chart of `records` (already one model, device and batch size), `pick` the recommended
/// technique and `budget_points` the quality budget; `None` when fewer than two cells have both
/// figures. The cost axis covers every point but far outliers (see [`super::robust_range`]),
/// drawn at the edge as triangles; the quality axis also covers the baseline's interval and the
/// budget around the baseline.
pub fn pareto_chart(
    records: &[&Record],
    cost: Cost,
    quality: Quality,
    title: &str,
    pick: Option<&str>,
    budget_points: f64,
) -> Option<ParetoChart> {
    let raw: Vec<(&Record, WithInterval, WithInterval)> = records
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter_map(|r| Some((*r, cost.of(r)?, quality.of(r)?)))
        .filter(|(_, c, q)| c.0.is_finite() && q.0.is_finite())
        .collect();
    if raw.len() < 2 {
        return None;
    }
    let scale = cost.scale(&raw.iter().map(|p| p.1 .0).collect::<Vec<_>>());
    let mut points: Vec<ParetoPoint> = raw
        .iter()
        .map(|(r, (c, c_ci), (q, q_ci))| {
            let technique = r.key.variant_label();
            ParetoPoint {
                baseline: technique == slimbench_models::technique::BASELINE,
                control: r.key.technique.is_control(),
                pick: pick == Some(technique.as_str()),
                technique,
                cost: scale.of(*c),
                cost_ci: c_ci.map(|(lo, hi)| (scale.of(lo), scale.of(hi))),
                quality: *q,
                quality_ci: *q_ci,
            }
        })
        .collect();
    // The baseline first.
    points.sort_by_key(|p| !p.baseline);
    let xs: Vec<f64> = points.iter().map(|p| p.cost).collect();
    let x_range = super::robust_range(&xs);
    // Intervals of the points inside the robust range widen it (an outlier's do not).
    let (mut x0, mut x1) = x_range;
    for p in points
        .iter()
        .filter(|p| p.cost >= x_range.0 && p.cost <= x_range.1)
    {
        if let Some((lo, hi)) = p
            .cost_ci
            .filter(|(lo, hi)| lo.is_finite() && hi.is_finite())
        {
            x0 = x0.min(lo);
            x1 = x1.max(hi);
        }
    }
    let (x0, x1) = padded((x0, x1), x1.abs() * 0.02 + 1e-12);
    let ys: Vec<f64> = points.iter().map(|p| p.quality).collect();
    let (mut y0, mut y1) = super::robust_range(&ys);
    for p in &points {
        if p.quality >= y0 && p.quality <= y1 {
            if let Some((lo, hi)) = p.quality_ci {
                y0 = y0.min(lo);
                y1 = y1.max(hi);
            }
        }
    }
    if let Some(b) = points.iter().find(|p| p.baseline) {
        if let Some((lo, hi)) = b.quality_ci {
            y0 = y0.min(lo);
            y1 = y1.max(hi);
        }
        if quality == Quality::Metric && budget_points.is_finite() {
            y0 = y0.min(b.quality - budget_points);
            y1 = y1.max(b.quality + budget_points);
        }
    }
    let y = match quality {
        Quality::Metric => {
            let (a, b) = padded((y0, y1), 0.2);
            (a.max(-0.5), b.min(100.5))
        }
        Quality::KlDivergence => padded((y0, y1), 1e-4),
    };
    Some(ParetoChart {
        points,
        x: super::bounded_axis(x0.max(0.0), x1),
        y: super::bounded_axis(y.0, y.1),
        cost_axis: cost.axis(scale),
        quality,
        quality_axis: quality.axis(records),
        title: title.to_string(),
    })
}

/// The kinds of point, in legend order: (name, colour index or black, shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Baseline,
    Front,
    Dominated,
    Control,
    OffScale,
}

impl Kind {
    fn color(self) -> RGBColor {
        match self {
            Kind::Baseline => RGBColor(0, 0, 0),
            Kind::Front => PALETTE[1],
            Kind::Dominated => PALETTE[0],
            Kind::Control => PALETTE[3],
            Kind::OffScale => PALETTE[5],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Baseline => "baseline",
            Kind::Front => "Pareto front",
            Kind::Dominated => "dominated",
            Kind::Control => "control arm",
            Kind::OffScale => "off scale, at the edge",
        }
    }

    /// Draws the marker centred at `(x, y)`.
    fn draw<DB: DrawingBackend>(
        self,
        area: &DrawingArea<DB, Shift>,
        (x, y): (i32, i32),
    ) -> anyhow::Result<()> {
        let c = self.color().filled();
        match self {
            Kind::Baseline => area
                .draw(&Rectangle::new([(x - 6, y - 6), (x + 6, y + 6)], c))
                .map_err(err),
            Kind::Control => area
                .draw(&Polygon::new(
                    vec![(x, y - 7), (x + 7, y), (x, y + 7), (x - 7, y)],
                    c,
                ))
                .map_err(err),
            Kind::OffScale => area.draw(&TriangleMarker::new((x, y), 7, c)).map_err(err),
            Kind::Front | Kind::Dominated => area.draw(&Circle::new((x, y), 6, c)).map_err(err),
        }
    }
}

/// Half the size of a marker's box, pixels (labels keep clear of it).
const MARKER: i32 = 8;

impl ParetoChart {
    /// The point as drawn: clamped into the axes, and whether it was outside.
    fn drawn_at(&self, x: f64, y: f64) -> ((f64, f64), bool) {
        let (x0, x1) = super::bounded_axis(self.x.0, self.x.1);
        let (y0, y1) = super::bounded_axis(self.y.0, self.y.1);
        let cx = if x.is_nan() { x0 } else { x.clamp(x0, x1) };
        let cy = if y.is_nan() { y0 } else { y.clamp(y0, y1) };
        ((cx, cy), cx != x || cy != y)
    }

    fn kinds(&self) -> Vec<Kind> {
        let xy: Vec<(f64, f64)> = self.points.iter().map(|p| (p.cost, p.quality)).collect();
        let front = pareto_front(&xy);
        self.points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if p.baseline {
                    Kind::Baseline
                } else if self.drawn_at(p.cost, p.quality).1 {
                    Kind::OffScale
                } else if p.control {
                    Kind::Control
                } else if front.contains(&i) {
                    Kind::Front
                } else {
                    Kind::Dominated
                }
            })
            .collect()
    }

    /// The legend's lines: one per kind present, naming its techniques, then the ring, the error
    /// bars and any point not labelled on the plot.
    fn legend(&self, kinds: &[Kind], unlabelled: &[String]) -> Vec<(Option<Kind>, String)> {
        let mut out = Vec::new();
        for kind in [
            Kind::Baseline,
            Kind::Front,
            Kind::Dominated,
            Kind::Control,
            Kind::OffScale,
        ] {
            let names: Vec<String> = self
                .points
                .iter()
                .zip(kinds)
                .filter(|(_, k)| **k == kind)
                .map(|(p, _)| {
                    if kind == Kind::OffScale {
                        let value = match self.quality {
                            Quality::Metric => format!("{:.1}%", p.quality),
                            Quality::KlDivergence => format!("KL {:.3}", -p.quality),
                        };
                        format!("{} ({value})", p.technique)
                    } else {
                        p.technique.clone()
                    }
                })
                .collect();
            if !names.is_empty() {
                out.push((Some(kind), format!("{}: {}", kind.name(), names.join(", "))));
            }
        }
        if let Some(p) = self.points.iter().find(|p| p.pick) {
            out.push((None, format!("ring: recommended ({})", p.technique)));
        }
        out.push((
            None,
            "bars: 95% intervals; cost and quality are means".to_string(),
        ));
        if !unlabelled.is_empty() {
            out.push((
                None,
                format!("not labelled (no room): {}", unlabelled.join(", ")),
            ));
        }
        out
    }

    /// Draws the chart on `root` (sized by [`ParetoChart::size`]): the plot, the legend under it.
    pub fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        layout: Layout,
    ) -> anyhow::Result<()> {
        root.fill(&WHITE).map_err(err)?;
        let (w, _) = root.dim_in_pixel();
        let text = layout.text();
        let below_title = super::titled(root, &self.title, layout)?;
        let (plot_area, key_area) = below_title.split_vertically(layout.plot_height());
        let (x0, x1) = super::bounded_axis(self.x.0, self.x.1);
        let (y0, y1) = super::bounded_axis(self.y.0, self.y.1);
        let y_label_w = 24 + text_size("-0.0000", text).0;
        let mut chart = ChartBuilder::on(&plot_area)
            .margin(10)
            .x_label_area_size(text as i32 * 3)
            .y_label_area_size(y_label_w)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(self.cost_axis.as_str())
            .y_desc(self.quality_axis.as_str())
            .x_labels(layout.ticks())
            .y_labels(layout.ticks())
            .label_style(("sans-serif", text))
            .axis_desc_style(("sans-serif", text))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        let kinds = self.kinds();
        // The front's line, through its points as drawn.
        let xy: Vec<(f64, f64)> = self.points.iter().map(|p| (p.cost, p.quality)).collect();
        let front: Vec<(f64, f64)> = pareto_front(&xy)
            .iter()
            .map(|&i| self.drawn_at(xy[i].0, xy[i].1).0)
            .collect();
        chart
            .draw_series(LineSeries::new(front, PALETTE[1].mix(0.6).stroke_width(2)))
            .map_err(err)?;
        // Error bars first, markers over them.
        let bar = RGBColor(0x44, 0x44, 0x44).stroke_width(1);
        let mut obstacles: Vec<LabelBox> = Vec::new();
        let mut anchors = Vec::new();
        for (p, kind) in self.points.iter().zip(&kinds) {
            let ((cx, cy), _) = self.drawn_at(p.cost, p.quality);
            if *kind != Kind::OffScale {
                let clamp_x = |v: f64| v.clamp(x0, x1);
                let clamp_y = |v: f64| v.clamp(y0, y1);
                if let Some((lo, hi)) = p.cost_ci {
                    let (a, b) = (
                        chart.backend_coord(&(clamp_x(lo), cy)),
                        chart.backend_coord(&(clamp_x(hi), cy)),
                    );
                    root.draw(&PathElement::new(vec![a, b], bar)).map_err(err)?;
                    for end in [a, b] {
                        root.draw(&PathElement::new(
                            vec![(end.0, end.1 - 4), (end.0, end.1 + 4)],
                            bar,
                        ))
                        .map_err(err)?;
                    }
                    // A label may cross a vertical bar, never lie along a horizontal one.
                    obstacles.push((a.0, a.1 - 2, b.0, b.1 + 2));
                }
                if let Some((lo, hi)) = p.quality_ci {
                    let (a, b) = (
                        chart.backend_coord(&(cx, clamp_y(hi))),
                        chart.backend_coord(&(cx, clamp_y(lo))),
                    );
                    root.draw(&PathElement::new(vec![a, b], bar)).map_err(err)?;
                    for end in [a, b] {
                        root.draw(&PathElement::new(
                            vec![(end.0 - 4, end.1), (end.0 + 4, end.1)],
                            bar,
                        ))
                        .map_err(err)?;
                    }
                }
            }
            let at = chart.backend_coord(&(cx, cy));
            obstacles.push((at.0 - MARKER, at.1 - MARKER, at.0 + MARKER, at.1 + MARKER));
            anchors.push(at);
        }
        for ((p, kind), at) in self.points.iter().zip(&kinds).zip(&anchors) {
            kind.draw(root, *at)?;
            if p.pick {
                root.draw(&Circle::new(*at, 11, BLACK.stroke_width(2)))
                    .map_err(err)?;
                obstacles.push((at.0 - 13, at.1 - 13, at.0 + 13, at.1 + 13));
            }
        }
        // Labels: the technique's name beside its point, where there is room; the plot's inner
        // area is where they may go (clear of the axes, their ticks and the caption).
        // Points come in the backend's pixels (`backend_coord`), so everything placed by them is
        // drawn on `root`, and the area is offset by the plot's place on it.
        let (pw, ph) = plot_area.dim_in_pixel();
        let (bx, by) = plot_area.get_base_pixel();
        let inner = (
            bx + 10 + y_label_w + 4,
            by + 12,
            bx + pw as i32 - 12,
            by + ph as i32 - 10 - text as i32 * 3 - 2,
        );
        let sizes: Vec<super::Anchored> = self
            .points
            .iter()
            .zip(&anchors)
            .map(|(p, at)| (*at, text_size(&p.technique, text)))
            .collect();
        // Labels claim room in order of importance: the baseline, the pick, the front, controls,
        // then the rest; a crowded chart loses the least telling names.
        let rank = |i: usize| match (self.points[i].baseline, self.points[i].pick, kinds[i]) {
            (true, _, _) => 0,
            (_, true, _) => 1,
            (_, _, Kind::Front) => 2,
            (_, _, Kind::Control) => 3,
            _ => 4,
        };
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        order.sort_by_key(|&i| rank(i));
        let in_order: Vec<super::Anchored> = order.iter().map(|&i| sizes[i]).collect();
        let mut placed = vec![None; sizes.len()];
        for (slot, pos) in order.iter().zip(place(&in_order, &obstacles, inner)) {
            placed[*slot] = pos;
        }
        let mut unlabelled = Vec::new();
        for (((p, pos), anchor), (_, (lw, lh))) in
            self.points.iter().zip(&placed).zip(&anchors).zip(&sizes)
        {
            // A label set away from its point gets a thin leader line to it.
            if let Some((lx, ly)) = pos {
                let near = (anchor.0.clamp(*lx, lx + lw), anchor.1.clamp(*ly, ly + lh));
                let (dx, dy) = ((near.0 - anchor.0) as f64, (near.1 - anchor.1) as f64);
                let dist = dx.hypot(dy);
                if dist > 14.0 {
                    let start = (
                        anchor.0 + (dx / dist * 8.0) as i32,
                        anchor.1 + (dy / dist * 8.0) as i32,
                    );
                    root.draw(&PathElement::new(
                        vec![start, near],
                        RGBColor(0x88, 0x88, 0x88).stroke_width(1),
                    ))
                    .map_err(err)?;
                }
            }
            match pos {
                Some(at) => root
                    .draw(&Text::new(
                        p.technique.clone(),
                        *at,
                        ("sans-serif", text).into_font().color(&BLACK),
                    ))
                    .map_err(err)?,
                None => unlabelled.push(p.technique.clone()),
            }
        }
        // The legend, one line per entry, wrapped to the width.
        let mut y = 4;
        for (kind, line) in self.legend(&kinds, &unlabelled) {
            let x = 14;
            if let Some(kind) = kind {
                kind.draw(&key_area, (x, y + text as i32 / 2))?;
            } else if line.starts_with("ring") {
                key_area
                    .draw(&Circle::new(
                        (x, y + text as i32 / 2),
                        6,
                        BLACK.stroke_width(2),
                    ))
                    .map_err(err)?;
            } else if line.starts_with("bars") {
                key_area
                    .draw(&PathElement::new(
                        vec![(x, y + 2), (x, y + text as i32 - 2)],
                        bar,
                    ))
                    .map_err(err)?;
            }
            for row in wrap(&line, text, w as i32 - 40) {
                key_area
                    .draw(&Text::new(
                        row,
                        (30, y),
                        ("sans-serif", text).into_font().color(&BLACK),
                    ))
                    .map_err(err)?;
                y += text_size("Xg", text).1 + 4;
            }
        }
        root.present().map_err(err)?;
        Ok(())
    }

    /// The chart's size at `layout`: the plot's height plus the legend's.
    pub fn size(&self, layout: Layout) -> (u32, u32) {
        let w = layout.width();
        let line_h = text_size("Xg", layout.text()).1 + 4;
        let lines: usize = self
            .legend(
                &self.kinds(),
                &self
                    .points
                    .iter()
                    .map(|p| p.technique.clone())
                    .collect::<Vec<_>>(),
            )
            .iter()
            .map(|(_, l)| wrap(l, layout.text(), w as i32 - 40).len())
            .sum();
        (
            w,
            super::title_height(&self.title, layout)
                + layout.plot_height()
                + 12
                + (lines as i32 * line_h) as u32,
        )
    }
}

/// `line` broken at spaces into rows at most `width` pixels wide at font size `size`.
pub(crate) fn wrap(line: &str, size: f64, width: i32) -> Vec<String> {
    let mut rows: Vec<String> = Vec::new();
    let mut row = String::new();
    for word in line.split(' ') {
        let candidate = if row.is_empty() {
            word.to_string()
        } else {
            format!("{row} {word}")
        };
        if !row.is_empty() && text_size(&candidate, size).0 > width {
            rows.push(std::mem::take(&mut row));
            row = word.to_string();
        } else {
            row = candidate;
        }
    }
    if !row.is_empty() {
        rows.push(row);
    }
    rows
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

    #[test]
    fn long_legend_lines_wrap_within_the_width() {
        let line = "dominated: int8, q8_0, q4_0, q4_1, q5_0, q5_1, prune-50, distill-kd, bf16";
        let rows = wrap(line, 16.0, 300);
        assert!(rows.len() > 1);
        assert!(rows.iter().all(|r| text_size(r, 16.0).0 <= 300));
        assert_eq!(rows.join(" "), line);
    }
}
