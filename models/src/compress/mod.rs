//! Compression techniques: each turns a trained model into a variant, and says what it did.

pub mod distill;
pub mod prune;
pub mod quantize;
