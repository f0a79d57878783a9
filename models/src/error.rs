//! The error type of the models crate: every failure names what it was reading.

use std::path::PathBuf;

/// Errors raised while loading data, building, compressing or evaluating models.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A data file could not be parsed; `line` is 1-based.
    #[error("{source_name}: line {line}: {message}")]
    DataLine {
        /// Which data set or file was being read.
        source_name: String,
        /// 1-based line number of the bad line.
        line: usize,
        /// What was wrong with it.
        message: String,
    },
    /// A data set as a whole is unusable (empty, wrong shape).
    #[error("{source_name}: {message}")]
    Data {
        /// Which data set or file was being read.
        source_name: String,
        /// What was wrong with it.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// A model name, technique or parameter is not known or out of range.
    #[error("{0}")]
    Invalid(String),
    /// A technique does not apply to this model (for example no layer fits the format).
    #[error("not applicable: {0}")]
    NotApplicable(String),
}

/// Result alias of the models crate.
pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
