//! slimbench-models: the model zoo, data sets, compression techniques and quality metrics.
//! All candle code of slimbench lives here; the harness reaches it through [`workload::Workload`].

pub mod cache;
pub mod catalog;
pub mod compress;
pub mod data;
pub mod device;
pub mod error;
pub mod kernels;
pub mod layer;
pub mod quality;
pub mod text;
pub mod train;
pub mod workload;
pub mod zoo;

pub use error::{ModelError, Result};
