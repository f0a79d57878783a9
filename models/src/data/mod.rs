//! Data sets that the model zoo trains and evaluates on, and their fixed splits.

pub mod digits;

pub use digits::Dataset;
pub mod emails;
