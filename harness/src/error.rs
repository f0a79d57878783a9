//! The harness's own error type: a usage error (bad flags, names, files given by the user), on
//! which the CLI exits 2 with the message; every other failure is an `anyhow` error (exit 1).

/// A usage error: bad flags or names. The CLI exits 2 on it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
