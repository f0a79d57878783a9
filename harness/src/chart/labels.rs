//! Greedy label placement: each label takes the first of a few positions around its point whose
//! box overlaps no label already placed (nor leaves the plot); failing all, the least-overlapping.

/// A placed label's box in pixels: left, top, right, bottom.
pub type LabelBox = (i32, i32, i32, i32);

/// Approximate text width in pixels for `chars` characters at font size `size`.
pub fn text_width(chars: usize, size: i32) -> i32 {
    (chars as i32 * size * 6) / 10
}

fn overlap(a: LabelBox, b: LabelBox) -> i32 {
    let w = (a.2.min(b.2) - a.0.max(b.0)).max(0);
    let h = (a.3.min(b.3) - a.1.max(b.1)).max(0);
    w * h
}

/// Places labels of `(anchor, text)` within `area` (left, top, right, bottom); returns each label's
/// top-left corner.
pub fn place(anchors: &[((i32, i32), String)], size: i32, area: LabelBox) -> Vec<(i32, i32)> {
    let mut placed: Vec<LabelBox> = Vec::new();
    let mut out = Vec::new();
    for ((x, y), text) in anchors {
        let w = text_width(text.chars().count(), size);
        let h = size + 2;
        // Two columns (right, left of the point) of rows that do not overlap one another.
        let mid = y - h / 2;
        let candidates = [
            (x + 6, mid),
            (x - 6 - w, mid),
            (x + 6, mid - h - 2),
            (x - 6 - w, mid - h - 2),
            (x + 6, mid + h + 2),
            (x - 6 - w, mid + h + 2),
            (x + 6, mid - 2 * h - 4),
            (x - 6 - w, mid + 2 * h + 4),
        ];
        let score = |(cx, cy): (i32, i32)| {
            let b = (cx, cy, cx + w, cy + h);
            let outside = if b.0 < area.0 || b.1 < area.1 || b.2 > area.2 || b.3 > area.3 {
                1_000_000
            } else {
                0
            };
            outside + placed.iter().map(|p| overlap(*p, b)).sum::<i32>()
        };
        let best = candidates
            .iter()
            .copied()
            .min_by_key(|c| score(*c))
            .unwrap_or((x + 6, *y));
        placed.push((best.0, best.1, best.0 + w, best.1 + h));
        out.push(best);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_of_nearby_points_do_not_overlap() {
        let anchors: Vec<((i32, i32), String)> = (0..6)
            .map(|i| ((200 + i * 3, 200 + i * 2), format!("variant-{i}")))
            .collect();
        let pos = place(&anchors, 12, (0, 0, 800, 600));
        let boxes: Vec<LabelBox> = pos
            .iter()
            .zip(&anchors)
            .map(|((x, y), (_, t))| (*x, *y, x + text_width(t.len(), 12), y + 14))
            .collect();
        for i in 0..boxes.len() {
            for j in i + 1..boxes.len() {
                assert_eq!(overlap(boxes[i], boxes[j]), 0, "{i} and {j}");
            }
        }
    }
}
