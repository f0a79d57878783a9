//! The ONNX schema's types (`proto/onnx.proto`, compiled by `build.rs` with protox and
//! prost-build): what slimbench writes a graph with.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
