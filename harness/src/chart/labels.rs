//! Label placement that never overlaps: each label takes the first free position of rings of
//! candidates around its point (nearest first), free meaning inside the plot and clear of every
//! label already placed and of every obstacle (the markers and horizontal error bars; a label may cross a vertical one); a label with no free position
//! is not placed, and the chart names it elsewhere. Text is measured with the chart's own font.

use plotters::prelude::*;

/// A box in pixels: left, top, right, bottom.
pub type LabelBox = (i32, i32, i32, i32);

/// Width and height in pixels of `text` at plotters font size `size` (the embedded DejaVu Sans
/// once `register_font` ran; an estimate if the font cannot measure it).
pub fn text_size(text: &str, size: f64) -> (i32, i32) {
    super::register_font();
    match ("sans-serif", size).into_font().box_size(text) {
        Ok((w, h)) => (w as i32, h as i32),
        Err(_) => (
            (text.chars().count() as f64 * size * 0.6) as i32,
            size as i32,
        ),
    }
}

/// True when boxes `a` and `b` share any area (touching edges do not).
pub fn overlaps(a: LabelBox, b: LabelBox) -> bool {
    a.0.max(b.0) < a.2.min(b.2) && a.1.max(b.1) < a.3.min(b.3)
}

/// Places labels, each `(anchor point, (width, height))`, inside `area`, clear of one another
/// and of `obstacles`; returns each label's top-left corner, `None` where no candidate was free.
pub fn place(
    labels: &[super::Anchored],
    obstacles: &[LabelBox],
    area: LabelBox,
) -> Vec<Option<(i32, i32)>> {
    let mut taken: Vec<LabelBox> = obstacles.to_vec();
    let mut out = Vec::new();
    for &((x, y), (w, h)) in labels {
        let mut found = None;
        'rings: for gap in [5, 12, 22, 36, 54, 78, 106] {
            let candidates = [
                (x + gap, y - h / 2),
                (x - gap - w, y - h / 2),
                (x - w / 2, y - gap - h),
                (x - w / 2, y + gap),
                (x + gap, y - gap - h),
                (x - gap - w, y - gap - h),
                (x + gap, y + gap),
                (x - gap - w, y + gap),
            ];
            for (cx, cy) in candidates {
                let b = (cx, cy, cx + w, cy + h);
                let inside = b.0 >= area.0 && b.1 >= area.1 && b.2 <= area.2 && b.3 <= area.3;
                if inside && !taken.iter().any(|t| overlaps(*t, b)) {
                    found = Some((cx, cy));
                    break 'rings;
                }
            }
        }
        if let Some((cx, cy)) = found {
            taken.push((cx, cy, cx + w, cy + h));
        }
        out.push(found);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_of_nearby_points_do_not_overlap_nor_cover_obstacles() {
        let labels: Vec<crate::chart::Anchored> = (0..12)
            .map(|i| ((200 + i * 3, 200 + i * 2), (70, 14)))
            .collect();
        let obstacles = [(195, 195, 240, 230)];
        let pos = place(&labels, &obstacles, (0, 0, 800, 600));
        let boxes: Vec<LabelBox> = pos
            .iter()
            .zip(&labels)
            .filter_map(|(p, (_, (w, h)))| p.map(|(x, y)| (x, y, x + w, y + h)))
            .collect();
        assert!(boxes.len() >= 8, "only {} of 12 placed", boxes.len());
        for (i, a) in boxes.iter().enumerate() {
            assert!(!overlaps(*a, obstacles[0]), "{i} covers the obstacle");
            for (j, b) in boxes.iter().enumerate().skip(i + 1) {
                assert!(!overlaps(*a, *b), "{i} and {j} overlap");
            }
        }
    }

    #[test]
    fn a_label_with_no_room_is_left_unplaced() {
        let pos = place(&[((10, 10), (100, 14))], &[], (0, 0, 50, 50));
        assert_eq!(pos, vec![None]);
    }
}
