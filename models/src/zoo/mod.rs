//! The model zoo: one file a model family.

pub mod mlp;
