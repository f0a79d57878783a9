//! The charts of the default run (`ci/baseline`) as a reader sees them: at both layouts, no two
//! texts of an SVG overlap, none runs past the chart's edge, and no text is smaller than 12 px in the SVG (11 px displayed at the
//! smallest scale the report's page shows a chart at).

use std::path::Path;

use slimbench::analysis::RunData;
use slimbench::chart::labels::{overlaps, text_size, LabelBox};
use slimbench::chart::Layout;

/// One `<text>` of an SVG: its box in pixels, its font size and its content.
#[derive(Debug)]
struct SvgText {
    bounds: LabelBox,
    font_px: f64,
    content: String,
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(&tag[start..end])
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Every text of `svg` with the box it covers: the width as the chart's own font measures it
/// (plotters writes font-size as its size / 1.24), placed by its anchor and rotation.
fn texts(svg: &str) -> Vec<SvgText> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find("<text") {
        let after = &rest[i..];
        let Some(open_end) = after.find('>') else {
            break;
        };
        let tag = &after[..open_end];
        let Some(close) = after.find("</text>") else {
            break;
        };
        let content = unescape(after[open_end + 1..close].trim());
        rest = &after[close..];
        if content.trim().is_empty() {
            continue;
        }
        let num = |n: &str| {
            attr(tag, n)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let (x, y, font_px) = (num("x"), num("y"), num("font-size"));
        let (w, h) = text_size(&content, font_px * 1.24);
        let (w, h) = (w as f64, h as f64);
        let left = match attr(tag, "text-anchor") {
            Some("middle") => -w / 2.0,
            Some("end") => -w,
            _ => 0.0,
        };
        let top = match attr(tag, "dy") {
            Some("0.76em") => 0.0,
            Some("0.5ex") => -h / 2.0,
            _ => -h,
        };
        // Shrunk by a pixel each side: glyph boxes include side bearings.
        let (l, t, r, b) = (left + 1.0, top + 1.0, left + w - 1.0, top + h - 1.0);
        let rotated = attr(tag, "transform").is_some_and(|t| t.starts_with("rotate(270"));
        let bounds = if rotated {
            // Rotated a quarter turn anticlockwise about the anchor: (dx, dy) -> (dy, -dx).
            (x + t, y - r, x + b, y - l)
        } else {
            (x + l, y + t, x + r, y + b)
        };
        out.push(SvgText {
            bounds: (
                bounds.0.round() as i32,
                bounds.1.round() as i32,
                bounds.2.round() as i32,
                bounds.3.round() as i32,
            ),
            font_px,
            content,
        });
    }
    out
}

fn baseline_charts() -> Vec<(String, slimbench::chart::Chart)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/baseline");
    let data = RunData::load(&dir).expect("ci/baseline loads");
    slimbench::export::html::charts(&data)
        .into_iter()
        .map(|(stem, _, chart)| (stem, chart))
        .collect()
}

#[test]
fn no_two_texts_of_a_default_run_chart_overlap_at_either_layout() {
    let charts = baseline_charts();
    assert!(charts.len() >= 8, "the default run draws its charts");
    let mut pareto_labels = 0;
    for (stem, chart) in &charts {
        for layout in Layout::ALL {
            let svg = chart.svg(layout).expect("draws");
            let texts = texts(&svg);
            assert!(!texts.is_empty(), "{stem} has text");
            if stem.starts_with("pareto") {
                pareto_labels += texts.len();
            }
            let (w, h) = chart.size(layout);
            for t in &texts {
                let b = t.bounds;
                assert!(
                    b.0 >= -1 && b.1 >= -1 && b.2 <= w as i32 + 1 && b.3 <= h as i32 + 1,
                    "{stem} ({layout:?}): '{}' {:?} runs past the chart's {w}x{h}",
                    t.content,
                    b
                );
            }
            for (i, a) in texts.iter().enumerate() {
                for b in &texts[i + 1..] {
                    assert!(
                        !overlaps(a.bounds, b.bounds),
                        "{stem} ({layout:?}): '{}' {:?} overlaps '{}' {:?}",
                        a.content,
                        a.bounds,
                        b.content,
                        b.bounds
                    );
                }
            }
        }
    }
    assert!(pareto_labels > 0);
}

#[test]
fn chart_text_is_legible_at_the_sizes_the_report_shows() {
    for (stem, chart) in baseline_charts() {
        for layout in Layout::ALL {
            let svg = chart.svg(layout).expect("draws");
            assert!(
                svg.contains(&format!("viewBox=\"0 0 {} ", layout.width())),
                "{stem}: sized by its viewBox at {} px",
                layout.width()
            );
            // The page shows a wide chart at >= 0.91 of its width and a narrow one at >= 0.86
            // (a 360 px phone): 12.1 and 12.9 px in the SVG stay >= 11 px on screen.
            let least = match layout {
                Layout::Wide => 11.0 / 0.91,
                Layout::Narrow => 11.0 / 0.86,
            };
            for t in texts(&svg) {
                assert!(
                    t.font_px >= least - 0.05,
                    "{stem} ({layout:?}): '{}' at {} px",
                    t.content,
                    t.font_px
                );
            }
        }
    }
}

#[test]
fn the_svg_text_reader_sees_an_overlap() {
    // The check above can fail: two texts drawn at the same place are seen to overlap.
    let svg = r#"<svg><text x="10" y="10" dy="0.76em" text-anchor="start" font-size="12">fp32</text><text x="14" y="12" dy="0.76em" text-anchor="start" font-size="12">int8</text></svg>"#;
    let t = texts(svg);
    assert_eq!(t.len(), 2);
    assert!(overlaps(t[0].bounds, t[1].bounds));
}
