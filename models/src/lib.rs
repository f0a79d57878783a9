//! slimbench-models: the model families, data sets, compression techniques and quality metrics.
//! All candle code of slimbench lives here; the harness reaches it through [`workload`] (build a
//! cell's workload), [`catalog`] (the names a plan may use) and [`technique`] (the grammar).

pub mod build_cost;
pub mod cache;
pub mod catalog;
pub mod device;
pub mod digits;
pub mod dimension;
pub mod engine;
pub mod error;
pub mod family;
pub mod fetch;
pub mod kernels;
pub mod layer;
pub mod linears;
pub mod llm;
pub mod onnx;
pub mod onnx_file;
pub mod pruning;
pub mod quality;
pub(crate) mod row_linear;
pub mod technique;
pub mod text;
pub mod workload;

pub use error::{ModelError, Result};
