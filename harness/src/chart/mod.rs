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
use trace::{TraceChart, TRACE_SIZE};

/// DejaVu Sans, for text in PNG charts (licence: `harness/data/fonts/LICENSE-DejaVu.txt`).
const FONT: &[u8] = include_bytes!("../../data/fonts/DejaVuSans.ttf");

/// Registers the embedded font as "sans-serif" once: plotters measures text with it (both
/// backends) and draws PNG text with it.
fn register_font() {
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

impl Chart {
    /// Pixels.
    pub fn size(&self) -> (u32, u32) {
        match self {
            Chart::Pareto(_) => SIZE,
            Chart::Bars(b) => b.size,
            Chart::Trace(_) => TRACE_SIZE,
        }
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, plotters::coord::Shift>,
    ) -> anyhow::Result<()> {
        match self {
            Chart::Pareto(c) => c.draw(root),
            Chart::Bars(c) => c.draw(root),
            Chart::Trace(c) => c.draw(root),
        }
    }

    /// The chart as SVG text.
    pub fn svg(&self) -> anyhow::Result<String> {
        register_font();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, self.size()).into_drawing_area();
            self.draw(&root)?;
        }
        Ok(svg)
    }

    /// Writes the chart as a PNG file.
    pub fn png(&self, path: &Path) -> anyhow::Result<()> {
        register_font();
        let root = BitMapBackend::new(path, self.size()).into_drawing_area();
        self.draw(&root)
    }
}

/// A palette whose colours differ in lightness (dark to light), for greyscale prints.
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1f, 0x2a, 0x44), // near-black blue
    RGBColor(0xd9, 0x5f, 0x02), // orange, mid
    RGBColor(0x7f, 0xc9, 0x7f), // light green
    RGBColor(0x75, 0x70, 0xb3), // purple, mid-dark
    RGBColor(0xfd, 0xc0, 0x86), // pale orange
    RGBColor(0x66, 0x66, 0x66), // grey
];

/// Chart size in pixels.
pub const SIZE: (u32, u32) = (760, 440);

pub(crate) fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e}")
}
