//! A small writer of ONNX graphs: named inputs and outputs, initializers, nodes with
//! attributes, the operator sets used; [`GraphBuilder::finish`] gives the model's protobuf bytes.

use std::collections::BTreeMap;

use prost::Message;

use crate::onnx::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

/// The standard operator set slimbench's graphs are written against (ONNX 1.12's, which has
/// `LayerNormalization`; ONNX Runtime 1.31 runs opsets up to 23).
pub const ONNX_OPSET: i64 = 17;
/// The version of Microsoft's contributed operators (`MatMulNBits`, ...).
pub const MICROSOFT_OPSET: i64 = 1;
/// The domain of Microsoft's contributed operators.
pub const MICROSOFT: &str = "com.microsoft";
/// The IR version written (ONNX 1.12's, which goes with opset 17).
pub const IR_VERSION: i64 = 8;

/// One dimension of a declared input or output: fixed, or named and set at run time.
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A dimension named in the graph (`batch`, `tokens`), any size at run time.
    Named(&'static str),
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// One integer.
    Int(i64),
    /// One float.
    Float(f32),
    /// A list of integers.
    Ints(Vec<i64>),
}

/// Builds one graph; names of intermediate values are made unique by a counter.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    name: String,
    prefix: String,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    domains: BTreeMap<String, i64>,
    next: usize,
}

fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n as i64),
                Dim::Named(s) => tensor_shape_proto::dimension::Value::DimParam(s.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut a = AttributeProto {
        name: Some(name.to_string()),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => {
            a.r#type = Some(AttributeType::Int as i32);
            a.i = Some(i);
        }
        Attr::Float(f) => {
            a.r#type = Some(AttributeType::Float as i32);
            a.f = Some(f);
        }
        Attr::Ints(v) => {
            a.r#type = Some(AttributeType::Ints as i32);
            a.ints = v;
        }
    }
    a
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub fn new(name: &str) -> Self {
        let mut domains = BTreeMap::new();
        domains.insert(String::new(), ONNX_OPSET);
        Self {
            name: name.to_string(),
            domains,
            ..Default::default()
        }
    }

    /// A builder of nodes to splice into another graph: every name it makes starts with
    /// `prefix`, so none clashes with the other graph's.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            ..Self::new("")
        }
    }

    /// A fresh value name starting with `stem`.
    pub fn fresh(&mut self, stem: &str) -> String {
        self.next += 1;
        format!("{}{stem}_{}", self.prefix, self.next)
    }

    /// The nodes, initializers and non-standard domains made so far, to splice elsewhere.
    pub fn into_parts(self) -> (Vec<NodeProto>, Vec<TensorProto>, Vec<String>) {
        let domains = self.domains.into_keys().filter(|d| !d.is_empty()).collect();
        (self.nodes, self.initializers, domains)
    }

    /// Declares a graph input; returns its name.
    pub fn input(&mut self, name: &str, elem: DataType, dims: &[Dim]) -> String {
        self.inputs.push(value_info(name, elem, dims));
        name.to_string()
    }

    /// Declares `value` a graph output called `name` (an `Identity` renames it when needed).
    pub fn output(&mut self, value: &str, name: &str, elem: DataType, dims: &[Dim]) {
        if value != name {
            self.nodes.push(NodeProto {
                input: vec![value.to_string()],
                output: vec![name.to_string()],
                op_type: Some("Identity".into()),
                name: Some(format!("{name}_out")),
                ..Default::default()
            });
        }
        self.outputs.push(value_info(name, elem, dims));
    }

    /// Adds an initializer of raw little-endian `bytes` of type `elem`; returns its name.
    pub fn initializer_raw(
        &mut self,
        stem: &str,
        elem: DataType,
        dims: &[usize],
        bytes: Vec<u8>,
    ) -> String {
        let name = self.fresh(stem);
        self.initializers.push(TensorProto {
            name: Some(name.clone()),
            data_type: Some(elem as i32),
            dims: dims.iter().map(|d| *d as i64).collect(),
            raw_data: Some(bytes),
            ..Default::default()
        });
        name
    }

    /// Adds an f32 initializer; returns its name.
    pub fn initializer_f32(&mut self, stem: &str, dims: &[usize], values: &[f32]) -> String {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer_raw(stem, DataType::Float, dims, bytes)
    }

    /// Adds an i64 initializer (shapes, axes); returns its name.
    pub fn initializer_i64(&mut self, stem: &str, values: &[i64]) -> String {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer_raw(stem, DataType::Int64, &[values.len()], bytes)
    }

    /// Adds a node of the standard domain with one output; returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        self.node_in("", op, inputs, 1, attrs).remove(0)
    }

    /// Adds a node of `domain` (`""` for the standard one) with `outputs` outputs; returns their
    /// names. An empty input name stands for an optional input left out.
    pub fn node_in(
        &mut self,
        domain: &str,
        op: &str,
        inputs: &[&str],
        outputs: usize,
        attrs: Vec<(&str, Attr)>,
    ) -> Vec<String> {
        if !domain.is_empty() {
            self.domains
                .entry(domain.to_string())
                .or_insert(MICROSOFT_OPSET);
        }
        let outs: Vec<String> = (0..outputs)
            .map(|_| self.fresh(&op.to_lowercase()))
            .collect();
        let name = self.fresh(op);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outs.clone(),
            name: Some(name),
            op_type: Some(op.to_string()),
            domain: (!domain.is_empty()).then(|| domain.to_string()),
            attribute: attrs.into_iter().map(|(n, v)| attribute(n, v)).collect(),
            ..Default::default()
        });
        outs
    }

    /// The model's protobuf bytes.
    pub fn finish(self) -> Vec<u8> {
        let model = ModelProto {
            ir_version: Some(IR_VERSION),
            producer_name: Some("slimbench".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            opset_import: self
                .domains
                .into_iter()
                .map(|(domain, version)| OperatorSetIdProto {
                    domain: Some(domain),
                    version: Some(version),
                })
                .collect(),
            graph: Some(GraphProto {
                name: Some(self.name),
                node: self.nodes,
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            ..Default::default()
        };
        model.encode_to_vec()
    }
}

/// Reads back a model written by [`GraphBuilder::finish`] (or any ONNX file).
pub fn decode(bytes: &[u8]) -> std::result::Result<ModelProto, prost::DecodeError> {
    ModelProto::decode(bytes)
}
