//! slimbench's models on ONNX Runtime: the ONNX schema ([`proto`]), a graph writer ([`graph`]),
//! each Linear in the formats ONNX Runtime runs ([`linear`]), the runtime library and its
//! sessions ([`runtime`]), what the families' workloads on it share ([`workload`]), and its fetch
//! from PyPI ([`fetch`]).

pub mod fetch;
pub mod graph;
pub mod linear;
pub mod proto;
pub mod runtime;
pub mod workload;
