//! Plan dimensions beyond the batch size (tokens per text, generated tokens, an image size, ...),
//! each defined once as data: its key in records, its flag and config key, unit, range, CSV column
//! and how it reads in labels. A family declares which it has ([`crate::family::PlanDims`]); the
//! plan, the config file, the limits, the labels, run-folder names and CSV columns read these
//! definitions, so a family with a new dimension changes no code outside its own folder.

use std::sync::RwLock;

use serde::ser::SerializeMap;

use crate::error::{ModelError, Result};

/// One plan dimension. Two families that share a dimension (text and language models both take
/// `seq_len`) share its definition; each gives its own default values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dimension {
    /// The key of its value in a cell, a record and `run.json`: `seq_len`.
    pub key: &'static str,
    /// The flag of `run` and `plan` that lists its values: `--seq-lens`.
    pub flag: &'static str,
    /// Another name of the flag, shown in the help: `--prompt-lens`.
    pub alias: Option<&'static str>,
    /// The config file's key that lists its values: `sequence_lengths`.
    pub config_key: &'static str,
    /// The CSV column of its value: `seq_len_tokens`.
    pub csv_column: &'static str,
    /// What it is, in words, for the report's method section: `sequence length`.
    pub name: &'static str,
    /// What one value counts, after the number in a chart group: `tokens` in `minilm (128
    /// tokens)`.
    pub label: &'static str,
    /// The letter before its value in a cell's name and run-folder file names: `s` in
    /// `minilm/fp32/cpu/b8/s128`.
    pub slug: &'static str,
    /// What joins its value to the batch shape in tables: `x` in `8x128`.
    pub shape_separator: &'static str,
    /// The flag's help (the defaults by model are added to it).
    pub help: &'static str,
    /// Smallest accepted value.
    pub min: usize,
    /// Largest accepted value.
    pub max: usize,
}

/// Tokens per text (the prompt's length for language models).
pub const SEQ_LEN: Dimension = Dimension {
    key: "seq_len",
    flag: "--seq-lens",
    alias: Some("--prompt-lens"),
    config_key: "sequence_lengths",
    csv_column: "seq_len_tokens",
    name: "sequence length",
    label: "tokens",
    slug: "s",
    shape_separator: "x",
    help: "Tokens per text for text models, and prompt tokens for language models (--prompt-lens), comma-separated, e.g. 32,128,256",
    min: 2,
    max: 8192,
};

/// Tokens generated after the prompt, for language models.
pub const GEN_TOKENS: Dimension = Dimension {
    key: "gen_tokens",
    flag: "--gen-tokens",
    alias: None,
    config_key: "gen_tokens",
    csv_column: "gen_tokens",
    name: "generated tokens",
    label: "generated tokens",
    slug: "g",
    shape_separator: "+",
    help: "Tokens generated after the prompt, for language models, comma-separated, e.g. 16,64",
    min: 1,
    max: 8192,
};

/// The dimensions of slimbench's own families, in the order labels show them.
const BUILT_IN: &[&Dimension] = &[&SEQ_LEN, &GEN_TOKENS];

/// Dimensions added at run time by families registered through
/// [`crate::catalog::register_family`].
static REGISTERED: RwLock<Vec<&'static Dimension>> = RwLock::new(Vec::new());

/// Every known dimension: the built-in ones, then those registered, in that order (the order of
/// a cell's values, labels and CSV columns).
pub fn all() -> Vec<&'static Dimension> {
    let mut out: Vec<&'static Dimension> = BUILT_IN.to_vec();
    match REGISTERED.read() {
        Ok(added) => out.extend(added.iter().copied()),
        Err(poisoned) => out.extend(poisoned.into_inner().iter().copied()),
    }
    out
}

/// The dimension whose key is `key`.
pub fn by_key(key: &str) -> Option<&'static Dimension> {
    all().into_iter().find(|d| d.key == key)
}

/// Makes `dimension` known (its flag, config key, record key and CSV column), for a family added
/// at run time. The same definition twice is accepted; another definition under a known key,
/// flag, config key or column is an error naming the clash.
pub fn register(dimension: &'static Dimension) -> Result<()> {
    let known = all();
    if known.contains(&dimension) {
        return Ok(());
    }
    for d in &known {
        let clash = [
            ("key", d.key, dimension.key),
            ("flag", d.flag, dimension.flag),
            ("config key", d.config_key, dimension.config_key),
            ("CSV column", d.csv_column, dimension.csv_column),
        ]
        .into_iter()
        .find(|(_, a, b)| a == b);
        if let Some((what, name, _)) = clash {
            return Err(ModelError::Invalid(format!(
                "dimension {:?}: its {what} {name:?} is already dimension {:?}'s; give it its own",
                dimension.key, d.key
            )));
        }
    }
    if dimension.min > dimension.max || dimension.min == 0 {
        return Err(ModelError::Invalid(format!(
            "dimension {:?}: range {}..={} must start at 1 or more and not be empty",
            dimension.key, dimension.min, dimension.max
        )));
    }
    match REGISTERED.write() {
        Ok(mut added) => added.push(dimension),
        Err(poisoned) => poisoned.into_inner().push(dimension),
    }
    Ok(())
}

/// A cell's values of its dimensions beyond the batch size, in [`all`]'s order (so two cells with
/// the same values are equal however they were made).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DimValues(Vec<(&'static Dimension, usize)>);

impl DimValues {
    /// The values, put in [`all`]'s order; a dimension given twice keeps its last value.
    pub fn new(values: impl IntoIterator<Item = (&'static Dimension, usize)>) -> Self {
        let mut out: Vec<(&'static Dimension, usize)> = Vec::new();
        for (d, v) in values {
            out.retain(|(o, _)| o.key != d.key);
            out.push((d, v));
        }
        let order = all();
        out.sort_by_key(|(d, _)| {
            order
                .iter()
                .position(|o| o.key == d.key)
                .unwrap_or(usize::MAX)
        });
        Self(out)
    }

    /// The value of `dimension`, if the cell has it.
    pub fn get(&self, dimension: &Dimension) -> Option<usize> {
        self.0
            .iter()
            .find(|(d, _)| d.key == dimension.key)
            .map(|(_, v)| *v)
    }

    /// Sets the value of `dimension`.
    pub fn set(&mut self, dimension: &'static Dimension, value: usize) {
        *self = Self::new(self.0.iter().copied().chain([(dimension, value)]));
    }

    /// Each dimension with its value, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static Dimension, usize)> + '_ {
        self.0.iter().copied()
    }

    /// True when the cell has no dimension beyond the batch size.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Writes each value under its key into a map being serialised (a cell's fields).
    pub(crate) fn serialize_into<M: SerializeMap>(
        &self,
        map: &mut M,
    ) -> std::result::Result<(), M::Error> {
        for (d, v) in &self.0 {
            map.serialize_entry(d.key, v)?;
        }
        Ok(())
    }
}

/// Every combination of the given values, the first dimension's outermost (the order cells run
/// in); one empty combination when no dimension is given.
pub fn combinations(values: &[(&'static Dimension, Vec<usize>)]) -> Vec<DimValues> {
    let mut out: Vec<Vec<(&'static Dimension, usize)>> = vec![Vec::new()];
    for (d, vs) in values {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                vs.iter().map(move |&v| {
                    let mut next = prefix.clone();
                    next.push((*d, v));
                    next
                })
            })
            .collect();
    }
    out.into_iter().map(DimValues::new).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    static SIDE: Dimension = Dimension {
        key: "test_side",
        flag: "--test-sides",
        alias: None,
        config_key: "test_sides",
        csv_column: "test_side_px",
        name: "side",
        label: "px",
        slug: "t",
        shape_separator: "@",
        help: "sides",
        min: 1,
        max: 64,
    };

    #[test]
    fn values_keep_one_order_whatever_order_they_are_given_in() {
        let a = DimValues::new([(&GEN_TOKENS, 64), (&SEQ_LEN, 128)]);
        let b = DimValues::new([(&SEQ_LEN, 128), (&GEN_TOKENS, 64)]);
        assert_eq!(a, b);
        assert_eq!(
            a.iter().map(|(d, _)| d.key).collect::<Vec<_>>(),
            ["seq_len", "gen_tokens"]
        );
        assert_eq!(a.get(&GEN_TOKENS), Some(64));
        let combos = combinations(&[(&SEQ_LEN, vec![32, 128]), (&GEN_TOKENS, vec![8, 64])]);
        let seqs: Vec<_> = combos
            .iter()
            .map(|c| (c.get(&SEQ_LEN), c.get(&GEN_TOKENS)))
            .collect();
        assert_eq!(
            seqs,
            [
                (Some(32), Some(8)),
                (Some(32), Some(64)),
                (Some(128), Some(8)),
                (Some(128), Some(64))
            ]
        );
        assert_eq!(combinations(&[]), vec![DimValues::default()]);
    }

    #[test]
    fn a_registered_dimension_is_known_once_and_a_clash_is_refused() {
        register(&SIDE).unwrap();
        register(&SIDE).unwrap();
        assert_eq!(all().iter().filter(|d| d.key == "test_side").count(), 1);
        assert_eq!(by_key("test_side"), Some(&SIDE));
        static CLASH: Dimension = Dimension {
            key: "other",
            csv_column: "seq_len_tokens",
            ..SIDE
        };
        let e = register(&CLASH).unwrap_err().to_string();
        assert!(
            e.contains("CSV column \"seq_len_tokens\"") && e.contains("seq_len"),
            "{e}"
        );
    }
}
