//! Quality metrics that need no hardware: accuracy against labels, agreement between two models.

/// Percentage of `predicted` equal to `expected` (0..100). Empty input gives 0.
pub fn accuracy_pct(predicted: &[u32], expected: &[u32]) -> f64 {
    if expected.is_empty() {
        return 0.0;
    }
    let hits = predicted
        .iter()
        .zip(expected)
        .filter(|(p, e)| p == e)
        .count();
    100.0 * hits as f64 / expected.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_matches() {
        assert_eq!(accuracy_pct(&[1, 2, 3, 4], &[1, 2, 0, 4]), 75.0);
        assert_eq!(accuracy_pct(&[], &[]), 0.0);
    }
}
