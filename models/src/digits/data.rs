//! The UCI optical digits data set (1797 images of 8x8 pixels), embedded in the binary.
//!
//! Provenance and licence: `models/data/PROVENANCE.md`.

use std::io::Read;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{ModelError, Result};

/// The gzipped CSV as shipped: 64 pixel values (0..16) then the label (0..9), one image a line.
pub const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// Number of pixels per image.
pub const DIGITS_FEATURES: usize = 64;
/// Number of classes.
pub const DIGITS_CLASSES: usize = 10;
/// Fraction of the rows held out for testing.
pub const TEST_FRACTION: f64 = 0.2;

/// A dense classification data set: `features` is row-major `len() x dim`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Row-major feature matrix, scaled to 0..1.
    pub features: Vec<f32>,
    /// One class index per row.
    pub labels: Vec<u32>,
    /// Number of features per row.
    pub dim: usize,
    /// Number of classes.
    pub classes: usize,
}

impl Dataset {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set has no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let mut features = Vec::with_capacity(indices.len() * self.dim);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            features.extend_from_slice(&self.features[i * self.dim..(i + 1) * self.dim]);
            labels.push(self.labels[i]);
        }
        Dataset {
            features,
            labels,
            dim: self.dim,
            classes: self.classes,
        }
    }

    /// Splits into (train, test) with a shuffle fixed by `seed`; `test_fraction` of the rows go to test.
    pub fn split(&self, seed: u64, test_fraction: f64) -> (Dataset, Dataset) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let n_test = ((self.len() as f64) * test_fraction).round() as usize;
        let (test, train) = order.split_at(n_test);
        (self.select(train), self.select(test))
    }
}

/// Loads the embedded digits data set.
pub fn load_digits() -> Result<Dataset> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|e| ModelError::Data {
            source_name: "digits.csv.gz".into(),
            message: format!("cannot decompress: {e}"),
        })?;
    parse_digits_csv(&text, "digits.csv.gz")
}

/// The fixed train/test split that every digits model uses (seed 0, 20% test).
pub fn digits_split() -> Result<(Dataset, Dataset)> {
    Ok(load_digits()?.split(0, TEST_FRACTION))
}

/// Parses digits CSV text: each non-empty line holds 64 pixel values (0..16) and a label (0..9).
/// `source_name` names the input in errors, which also give the 1-based line number.
pub fn parse_digits_csv(text: &str, source_name: &str) -> Result<Dataset> {
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let bad = |line: usize, message: String| ModelError::DataLine {
        source_name: source_name.to_string(),
        line,
        message,
    };
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw.split(',').collect();
        if fields.len() != DIGITS_FEATURES + 1 {
            return Err(bad(
                line_no,
                format!(
                    "expected {} comma-separated values (64 pixels and a label), found {}",
                    DIGITS_FEATURES + 1,
                    fields.len()
                ),
            ));
        }
        for (col, field) in fields[..DIGITS_FEATURES].iter().enumerate() {
            let value: f32 = field.trim().parse().map_err(|_| {
                bad(
                    line_no,
                    format!("pixel {} is not a number: {field:?}", col + 1),
                )
            })?;
            if !(0.0..=16.0).contains(&value) {
                return Err(bad(
                    line_no,
                    format!("pixel {} is {value}, outside 0..16", col + 1),
                ));
            }
            features.push(value / 16.0);
        }
        let label_text = fields[DIGITS_FEATURES].trim();
        let label: u32 = label_text
            .parse()
            .ok()
            .filter(|l| (*l as usize) < DIGITS_CLASSES)
            .ok_or_else(|| bad(line_no, format!("label {label_text:?} is not a class 0..9")))?;
        labels.push(label);
    }
    if labels.is_empty() {
        return Err(ModelError::Data {
            source_name: source_name.to_string(),
            message: "no rows".into(),
        });
    }
    Ok(Dataset {
        features,
        labels,
        dim: DIGITS_FEATURES,
        classes: DIGITS_CLASSES,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_digits_have_the_documented_shape() {
        let data = load_digits().unwrap();
        assert_eq!(data.len(), 1797);
        assert_eq!(data.dim, 64);
        assert_eq!(data.features.len(), 1797 * 64);
        let mut seen = [false; 10];
        for &l in &data.labels {
            seen[l as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "all 10 classes occur");
    }

    #[test]
    fn malformed_line_is_reported_with_its_number() {
        let good = vec!["0"; 65].join(",");
        let text = format!("{good}\n{good}\n1,2,3\n");
        let err = parse_digits_csv(&text, "test.csv").unwrap_err().to_string();
        assert!(err.contains("test.csv: line 3"), "{err}");
        assert!(err.contains("found 3"), "{err}");
    }

    #[test]
    fn bad_pixel_and_label_are_reported() {
        let mut fields = vec!["0"; 65];
        fields[5] = "x";
        let err = parse_digits_csv(&fields.join(","), "f")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") && err.contains("pixel 6"), "{err}");
        let mut fields = vec!["0"; 65];
        fields[64] = "12";
        let err = parse_digits_csv(&fields.join(","), "f")
            .unwrap_err()
            .to_string();
        assert!(err.contains("label \"12\""), "{err}");
    }

    #[test]
    fn split_is_fixed_by_seed_and_disjoint() {
        let data = load_digits().unwrap();
        let (train_a, test_a) = data.split(0, TEST_FRACTION);
        let (train_b, test_b) = data.split(0, TEST_FRACTION);
        assert_eq!(test_a, test_b);
        assert_eq!(train_a, train_b);
        assert_eq!(test_a.len(), 359);
        assert_eq!(train_a.len() + test_a.len(), 1797);
        let (_, test_c) = data.split(1, TEST_FRACTION);
        assert_ne!(test_a.labels, test_c.labels);
    }
}
