//! A logistic-regression probe on sentence embeddings (spam or not), trained by full-batch
//! gradient descent with L2 regularisation: deterministic, no tensors needed.

use serde::{Deserialize, Serialize};

/// Gradient steps of the probe's training.
pub const PROBE_STEPS: usize = 1_500;
/// Learning rate of the probe's training.
pub const PROBE_LEARNING_RATE: f64 = 2.0;
/// L2 penalty of the probe's training.
pub const PROBE_L2: f64 = 1e-4;

/// A trained linear probe: `p(spam) = sigmoid(w . x + b)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// One weight per embedding dimension.
    pub weights: Vec<f64>,
    /// The bias.
    pub bias: f64,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Probe {
    /// Trains on `rows` (each an embedding) with labels `spam`.
    pub fn train(rows: &[Vec<f32>], spam: &[bool]) -> Self {
        let dim = rows.first().map_or(0, Vec::len);
        let n = rows.len().max(1) as f64;
        let mut probe = Probe {
            weights: vec![0.0; dim],
            bias: 0.0,
        };
        let mut grad = vec![0.0; dim];
        for _ in 0..PROBE_STEPS {
            grad.iter_mut().for_each(|g| *g = 0.0);
            let mut grad_b = 0.0;
            for (x, &y) in rows.iter().zip(spam) {
                let err = sigmoid(probe.logit(x)) - f64::from(u8::from(y));
                for (g, &v) in grad.iter_mut().zip(x) {
                    *g += err * f64::from(v);
                }
                grad_b += err;
            }
            for (w, g) in probe.weights.iter_mut().zip(&grad) {
                *w -= PROBE_LEARNING_RATE * (g / n + PROBE_L2 * *w);
            }
            probe.bias -= PROBE_LEARNING_RATE * grad_b / n;
        }
        probe
    }

    /// `w . x + b`.
    pub fn logit(&self, x: &[f32]) -> f64 {
        self.weights
            .iter()
            .zip(x)
            .map(|(w, &v)| w * f64::from(v))
            .sum::<f64>()
            + self.bias
    }

    /// Whether each of `rows` is classified as its label.
    pub fn correct(&self, rows: &[Vec<f32>], spam: &[bool]) -> Vec<bool> {
        rows.iter()
            .zip(spam)
            .map(|(x, &y)| (self.logit(x) > 0.0) == y)
            .collect()
    }

    /// Percentage of `rows` classified as their label.
    pub fn accuracy_pct(&self, rows: &[Vec<f32>], spam: &[bool]) -> f64 {
        if rows.is_empty() {
            return 0.0;
        }
        let hits = self.correct(rows, spam).iter().filter(|c| **c).count();
        100.0 * hits as f64 / rows.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_data_is_learned() {
        let rows: Vec<Vec<f32>> = (0..40)
            .map(|i| vec![if i % 2 == 0 { 0.5 } else { -0.5 }, (i as f32 * 0.37).sin()])
            .collect();
        let spam: Vec<bool> = (0..40).map(|i| i % 2 == 0).collect();
        let probe = Probe::train(&rows, &spam);
        assert_eq!(probe.accuracy_pct(&rows, &spam), 100.0);
        assert!(probe.weights[0] > 0.0);
    }
}
