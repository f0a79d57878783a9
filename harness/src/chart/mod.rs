//! Charts: pure functions from records (and trace text) to SVG. Nothing here reads the clock or
//! the hardware. Colours differ in lightness as well as hue, and scatter points also differ in
//! shape, so every chart stays readable in greyscale; labels are placed so they do not overlap.

pub mod bars;
pub mod labels;
pub mod pareto;
pub mod trace;

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::RGBColor;

use bars::BarsChart;
use pareto::ParetoChart;
use trace::TraceChart;

/// DejaVu Sans, for text in PNG charts (licence: `harness/data/fonts/LICENSE-DejaVu.txt`).
const FONT: &[u8] = include_bytes!("../../data/fonts/DejaVuSans.ttf");

/// Registers the embedded font as "sans-serif" once: plotters measures text with it (both
/// backends) and draws PNG text with it.
pub(crate) fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            eprintln!("warning: the embedded chart font did not load; chart text may be missing");
        }
    });
}

/// One chart, drawable to SVG or PNG.
#[derive(Debug, Clone, PartialEq)]
pub enum Chart {
    /// Quality against cost.
    Pareto(ParetoChart),
    /// Grouped bars.
    Bars(BarsChart),
    /// A power trace.
    Trace(TraceChart),
}

/// The width a chart is drawn at, and its text sizes. The report shows `Wide` charts on screens
/// from about 720 px (two a row from about 1300 px) and `Narrow` ones below, each at most its own
/// width, so that no chart text is displayed under 11 px: the smallest text is 15 (wide) or 16
/// (narrow) in plotters' sizes, which the SVG writes as font-size size / 1.24 (12.1 and 12.9 px),
/// and the page never shrinks a chart below 0.91 (wide) or 0.86 (narrow, a 360 px phone) of its
/// width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// 680 px wide: desktops and tablets; the standalone SVG and PNG files.
    Wide,
    /// 400 px wide: phones.
    Narrow,
}

impl Layout {
    /// Both layouts.
    pub const ALL: [Layout; 2] = [Layout::Wide, Layout::Narrow];

    /// Width in pixels.
    pub fn width(self) -> u32 {
        match self {
            Layout::Wide => 680,
            Layout::Narrow => 400,
        }
    }

    /// The size of every text but the caption (plotters' size).
    pub fn text(self) -> f64 {
        match self {
            Layout::Wide => 15.0,
            Layout::Narrow => 16.0,
        }
    }

    /// The caption's size.
    pub fn title(self) -> f64 {
        18.0
    }

    /// Height of a Pareto chart's plot (its legend goes under it).
    pub fn plot_height(self) -> u32 {
        match self {
            Layout::Wide => 420,
            Layout::Narrow => 380,
        }
    }

    /// About how many ticks an axis gets.
    pub fn ticks(self) -> usize {
        match self {
            Layout::Wide => 7,
            Layout::Narrow => 4,
        }
    }
}

impl Chart {
    /// Pixels at `layout`.
    pub fn size(&self, layout: Layout) -> (u32, u32) {
        match self {
            Chart::Pareto(c) => c.size(layout),
            Chart::Bars(b) => b.size(layout),
            Chart::Trace(t) => (
                layout.width(),
                title_height(&t.title, layout) + trace::plot_height(layout),
            ),
        }
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, plotters::coord::Shift>,
        layout: Layout,
    ) -> anyhow::Result<()> {
        match self {
            Chart::Pareto(c) => c.draw(root, layout),
            Chart::Bars(c) => c.draw(root, layout),
            Chart::Trace(c) => c.draw(root, layout),
        }
    }

    /// The chart as SVG text at `layout` (sized by its viewBox, so a page can scale it).
    pub fn svg(&self, layout: Layout) -> anyhow::Result<String> {
        register_font();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, self.size(layout)).into_drawing_area();
            self.draw(&root, layout)?;
        }
        Ok(svg)
    }

    /// Writes the chart as a PNG file (the wide layout).
    pub fn png(&self, path: &Path) -> anyhow::Result<()> {
        register_font();
        let root = BitMapBackend::new(path, self.size(Layout::Wide)).into_drawing_area();
        self.draw(&root, Layout::Wide)?;
        // Present explicitly: a failed write on drop would go unnoticed.
        root.present().map_err(err)
    }
}

/// `title` broken into rows that fit `layout`'s width at the caption's size, and the height of a
/// row.
fn title_rows(title: &str, layout: Layout) -> (Vec<String>, i32) {
    let size = layout.title();
    let line_h = labels::text_size("Xg", size).1 + 4;
    (
        pareto::wrap(title, size, layout.width() as i32 - 20),
        line_h,
    )
}

/// Height the title takes at the top of a chart drawn at `layout` ([`titled`]).
pub(crate) fn title_height(title: &str, layout: Layout) -> u32 {
    let (rows, line_h) = title_rows(title, layout);
    (6 + rows.len() as i32 * line_h + 4) as u32
}

/// Draws `title` at the top of `root` (a chart at `layout`), wrapped to its width, and returns
/// the area under it.
pub(crate) fn titled<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    layout: Layout,
) -> anyhow::Result<DrawingArea<DB, plotters::coord::Shift>> {
    let (rows, line_h) = title_rows(title, layout);
    for (i, row) in rows.iter().enumerate() {
        root.draw(&Text::new(
            row.clone(),
            (10, 6 + i as i32 * line_h),
            ("sans-serif", layout.title()).into_font().color(&BLACK),
        ))
        .map_err(err)?;
    }
    let (_, rest) = root.split_vertically(title_height(title, layout));
    Ok(rest)
}

/// A value with its 95% interval where it has one: (value, (low, high)).
pub type WithInterval = (f64, Option<(f64, f64)>);

/// Mean latency per item (ms) of `r` and its 95% interval (the mean's, over rounds).
pub(crate) fn latency_per_item(r: &crate::results::Record) -> Option<WithInterval> {
    r.latency.as_ref().map(|l| {
        let d = r.key.batch_size.max(1) as f64;
        (l.mean_ms / d, l.mean_ci95_ms.map(|i| (i.lo / d, i.hi / d)))
    })
}

/// Energy per item (J) of `r` and its 95% interval: the estimate's band where estimated (the
/// tables' band), else the record's relative uncertainty over rounds
/// ([`crate::analysis::compare::energy_rel_uncertainty`]).
pub(crate) fn energy_per_item(r: &crate::results::Record) -> Option<WithInterval> {
    r.energy.as_ref().map(|e| {
        let v = e.energy_per_item_j;
        let band = e.per_item_band_j().or_else(|| {
            let rel = crate::analysis::compare::energy_rel_uncertainty(r);
            Some((v * (1.0 - rel), v * (1.0 + rel)))
        });
        (v, band)
    })
}

/// A point and a size in pixels: a label's anchor and its (width, height).
pub type Anchored = ((i32, i32), (i32, i32));

/// A palette whose colours differ in lightness (dark to light), for greyscale prints.
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1f, 0x2a, 0x44), // near-black blue
    RGBColor(0xd9, 0x5f, 0x02), // orange, mid
    RGBColor(0x7f, 0xc9, 0x7f), // light green
    RGBColor(0x75, 0x70, 0xb3), // purple, mid-dark
    RGBColor(0xfd, 0xc0, 0x86), // pale orange
    RGBColor(0x66, 0x66, 0x66), // grey
];

pub(crate) fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e}")
}

/// The largest magnitude an axis end may have: twice it is still finite, so an axis width never
/// overflows.
const AXIS_MAGNITUDE: f64 = 1e300;
/// The narrowest axis, absolute: a tick step a tenth of it stays a normal number.
const AXIS_MIN_WIDTH: f64 = 1e-200;
/// The narrowest axis relative to its ends' magnitude, so ticks differ in their digits.
const AXIS_MIN_RELATIVE_WIDTH: f64 = 1e-9;

/// An axis range plotters can put ticks on in bounded time: both ends finite (NaN taken as 0,
/// magnitudes clamped to `AXIS_MAGNITUDE`), ascending, and at least `AXIS_MIN_WIDTH` and
/// `AXIS_MIN_RELATIVE_WIDTH` of its magnitude wide (widened about its middle). Plotters' tick
/// search loops for ever on an infinite, NaN, zero-width or sub-resolution range; every chart
/// passes its ranges through here.
pub fn bounded_axis(lo: f64, hi: f64) -> (f64, f64) {
    let fix = |v: f64| {
        if v.is_nan() {
            0.0
        } else {
            v.clamp(-AXIS_MAGNITUDE, AXIS_MAGNITUDE)
        }
    };
    let (a, b) = (fix(lo), fix(hi));
    let (lo, hi) = (a.min(b), a.max(b));
    let min_width = (lo.abs().max(hi.abs()) * AXIS_MIN_RELATIVE_WIDTH).max(AXIS_MIN_WIDTH);
    if hi - lo >= min_width {
        return (lo, hi);
    }
    let mid = lo / 2.0 + hi / 2.0;
    (mid - min_width / 2.0, mid + min_width / 2.0)
}

/// The range an axis shows for `values`: from the smallest to the largest value that is not a far
/// outlier (beyond 3 interquartile ranges of the quartiles, Tukey's "far out"), so that one
/// extreme point does not squash the rest into a line. Values outside are drawn at the edge and
/// marked as outliers.
pub fn robust_range(values: &[f64]) -> (f64, f64) {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return (0.0, 1.0);
    }
    sorted.sort_by(f64::total_cmp);
    let q1 = crate::stats::percentile_sorted(&sorted, 25.0);
    let q3 = crate::stats::percentile_sorted(&sorted, 75.0);
    // A floor on the spread, so that identical values do not make every other one an outlier.
    let iqr = (q3 - q1).max(0.05 * q3.abs().max(q1.abs())).max(1e-12);
    let (fence_lo, fence_hi) = (q1 - 3.0 * iqr, q3 + 3.0 * iqr);
    let lo = sorted
        .iter()
        .copied()
        .find(|v| *v >= fence_lo)
        .unwrap_or(sorted[0]);
    let hi = sorted
        .iter()
        .rev()
        .copied()
        .find(|v| *v <= fence_hi)
        .unwrap_or(sorted[sorted.len() - 1]);
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_far_outlier_is_left_out_of_the_range() {
        let v = [97.2, 96.9, 97.2, 96.7, 96.7, 64.4, 97.0];
        let (lo, hi) = robust_range(&v);
        assert_eq!((lo, hi), (96.7, 97.2));
        // No outlier: the full range.
        assert_eq!(robust_range(&[1.0, 2.0, 3.0]), (1.0, 3.0));
    }
}
