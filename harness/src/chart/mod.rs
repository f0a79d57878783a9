//! Charts: pure functions from records (and trace text) to SVG. Nothing here reads the clock or
//! the hardware. Colours differ in lightness as well as hue, and scatter points also differ in
//! shape, so every chart stays readable in greyscale; labels are placed so they do not overlap.

pub mod bars;
pub mod labels;
pub mod pareto;
pub mod trace;

use plotters::style::RGBColor;

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
