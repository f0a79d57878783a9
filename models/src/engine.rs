//! The engines a cell can run on: slimbench's own (candle and slimbench's kernels) or ONNX
//! Runtime (the variant written as an ONNX graph). One name each, for flags, records and tables.

use serde::{Deserialize, Serialize};

/// The engine that runs a cell's variant.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// slimbench's own engine: candle, with slimbench's CPU kernels.
    #[default]
    Slimbench,
    /// ONNX Runtime (CPU execution provider) through the `ort` crate, on the variant exported
    /// as an ONNX graph.
    Ort,
}

/// Every engine's name and what it is, for `--engines`' help and errors.
pub const ENGINES: &[(&str, &str)] = &[
    (
        "slimbench",
        "slimbench's own engine: candle with slimbench's CPU kernels",
    ),
    (
        "ort",
        "ONNX Runtime 1.31 (CPU) on the variant exported as an ONNX graph; needs `slimbench fetch onnxruntime`",
    ),
];

impl Engine {
    /// The engine's name (`slimbench`, `ort`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Slimbench => "slimbench",
            Self::Ort => "ort",
        }
    }

    /// True for slimbench's own engine (the default, which cell names leave out).
    pub fn is_default(&self) -> bool {
        *self == Self::Slimbench
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "slimbench" => Ok(Self::Slimbench),
            "ort" | "onnxruntime" => Ok(Self::Ort),
            other => Err(format!(
                "unknown engine {other:?}; valid engines: {}",
                ENGINES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_engine_parses_back_to_its_name_and_others_are_refused_with_the_list() {
        for (name, _) in ENGINES {
            assert_eq!(name.parse::<Engine>().unwrap().name(), *name);
        }
        let e = "tensorrt".parse::<Engine>().unwrap_err();
        assert!(e.contains("slimbench, ort"), "{e}");
    }
}
