//! Placeholder library target of the root package; its content is `benches/`.
