//! Weight quantization of every fully connected layer: GGML's block formats (quantized by candle's
//! `QTensor`, multiplied by slimbench's own kernels on the CPU), half-precision casts and `int8`.
//!
//! A block format needs the layer's input width to be a multiple of its block (32 elements for
//! q8_0, q4_0, q4_1, q5_0, q5_1; 256 for the k-quants). A layer that does not fit falls back along
//! [`fallback_chain`]: to the nearest block-32 format with at least as many bits per weight, and
//! last to f32, never to fewer bits than asked. Each layer's report says what it got and why.

use candle_core::quantized::GgmlDType;

use crate::error::{ModelError, Result};
use crate::layer::{format_name, DenseLayer, LayerReport};
use crate::zoo::net::Network;

/// The weight formats slimbench can quantize to, by name.
pub const QUANT_FORMATS: &[(&str, GgmlDType)] = &[
    ("q8_0", GgmlDType::Q8_0),
    ("q6k", GgmlDType::Q6K),
    ("q5k", GgmlDType::Q5K),
    ("q5_1", GgmlDType::Q5_1),
    ("q5_0", GgmlDType::Q5_0),
    ("q4k", GgmlDType::Q4K),
    ("q4_1", GgmlDType::Q4_1),
    ("q4_0", GgmlDType::Q4_0),
];

/// The format named `name`, if it is one of [`QUANT_FORMATS`].
pub fn format_by_name(name: &str) -> Option<GgmlDType> {
    QUANT_FORMATS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
}

/// The formats tried, in order, for a layer when `format` is asked for; f32 (not listed) is last.
pub fn fallback_chain(format: GgmlDType) -> Vec<GgmlDType> {
    match format {
        GgmlDType::Q6K => vec![GgmlDType::Q6K, GgmlDType::Q8_0],
        GgmlDType::Q5K => vec![GgmlDType::Q5K, GgmlDType::Q5_1, GgmlDType::Q8_0],
        GgmlDType::Q4K => vec![GgmlDType::Q4K, GgmlDType::Q4_1, GgmlDType::Q8_0],
        other => vec![other],
    }
}

/// The first format of `format`'s fallback chain whose block divides `in_dim`, if any.
pub fn choose_format(format: GgmlDType, in_dim: usize) -> Option<GgmlDType> {
    fallback_chain(format)
        .into_iter()
        .find(|f| in_dim.is_multiple_of(f.block_size()))
}

/// A network with quantized layers and what each layer got.
#[derive(Debug, Clone)]
pub struct QuantizedNetwork {
    /// The quantized model.
    pub model: Network,
    /// One entry per layer, with the chosen format and the reason for any fallback.
    pub layers: Vec<LayerReport>,
}

/// Quantizes every fully connected layer of `net` to `format`, falling back per layer where the
/// block does not fit; convolutions stay f32 (candle has no quantized convolution). Returns
/// `NotApplicable` when no layer can be quantized at all.
pub fn quantize_network(net: &Network, format: GgmlDType) -> Result<QuantizedNetwork> {
    let asked = format_name(format);
    let mut layers = Vec::new();
    let mut reports = Vec::new();
    for layer in &net.dense {
        let (new_layer, note): (DenseLayer, Option<String>) =
            match choose_format(format, layer.in_dim) {
                Some(chosen) if chosen == format => (layer.quantized(chosen)?, None),
                Some(chosen) => (
                    layer.quantized(chosen)?,
                    Some(format!(
                    "input width {} is not a multiple of {asked}'s block of {}; fell back to {}",
                    layer.in_dim,
                    format.block_size(),
                    format_name(chosen)
                )),
                ),
                None => (
                    layer.clone(),
                    Some(format!(
                        "input width {} fits no block of {asked}'s fallback chain; kept f32",
                        layer.in_dim
                    )),
                ),
            };
        reports.push(new_layer.report(note));
        layers.push(new_layer);
    }
    if reports.iter().all(|r| r.format == "f32") {
        return Err(ModelError::NotApplicable(format!(
            "no layer's input width fits {asked} (block {}): widths {:?}",
            format.block_size(),
            net.dense.iter().map(|l| l.in_dim).collect::<Vec<_>>()
        )));
    }
    let mut all = net
        .convs
        .iter()
        .map(|c| c.report())
        .collect::<Result<Vec<_>>>()?;
    all.extend(reports);
    Ok(QuantizedNetwork {
        model: Network {
            convs: net.convs.clone(),
            dense: layers,
        },
        layers: all,
    })
}

/// Casts every fully connected layer's weight to f16 or bf16 (convolutions stay f32). On x86
/// CPUs candle widens half-precision matmuls to f32: the cast saves memory, not time.
pub fn cast_network(net: &Network, dtype: candle_core::DType) -> Result<QuantizedNetwork> {
    map_dense(net, |l| l.cast(dtype))
}

/// Stores every fully connected layer's weight as int8 for slimbench's own kernel (convolutions
/// stay f32).
pub fn int8_network(net: &Network) -> Result<QuantizedNetwork> {
    map_dense(net, DenseLayer::int8)
}

/// `net` with every fully connected layer replaced by `f(layer)`, and the layers' reports.
fn map_dense(
    net: &Network,
    f: impl Fn(&DenseLayer) -> Result<DenseLayer>,
) -> Result<QuantizedNetwork> {
    let dense = net.dense.iter().map(f).collect::<Result<Vec<_>>>()?;
    let model = Network {
        convs: net.convs.clone(),
        dense,
    };
    let layers = model.layer_reports()?;
    Ok(QuantizedNetwork { model, layers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn mlp_with_widths(widths: &[usize]) -> Network {
        let dense = widths
            .windows(2)
            .enumerate()
            .map(|(i, p)| {
                let w = Tensor::randn(0f32, 1.0, (p[1], p[0]), &Device::Cpu).unwrap();
                let b = Tensor::zeros(p[1], candle_core::DType::F32, &Device::Cpu).unwrap();
                DenseLayer::from_f32(format!("layers.{i}"), &w, b).unwrap()
            })
            .collect();
        Network {
            convs: vec![],
            dense,
        }
    }

    #[test]
    fn k_quant_falls_back_per_layer_and_says_why() {
        let mlp = mlp_with_widths(&[64, 256, 10]);
        let q = quantize_network(&mlp, GgmlDType::Q4K).unwrap();
        assert_eq!(q.layers[0].format, "q4_1");
        assert!(q.layers[0]
            .note
            .as_deref()
            .unwrap()
            .contains("fell back to q4_1"));
        assert_eq!(q.layers[1].format, "q4k");
        assert!(q.layers[1].note.is_none());
    }

    #[test]
    fn a_layer_fitting_no_block_stays_f32_and_nothing_fitting_is_not_applicable() {
        let mlp = mlp_with_widths(&[64, 20, 10]);
        let q = quantize_network(&mlp, GgmlDType::Q8_0).unwrap();
        assert_eq!(q.layers[0].format, "q8_0");
        assert_eq!(q.layers[1].format, "f32");
        assert!(q.layers[1].note.as_deref().unwrap().contains("kept f32"));
        let none_fit = mlp_with_widths(&[20, 10]);
        let err = quantize_network(&none_fit, GgmlDType::Q8_0).unwrap_err();
        assert!(matches!(err, ModelError::NotApplicable(_)), "{err}");
    }

    #[test]
    fn quantized_size_is_the_real_block_storage() {
        let mlp = mlp_with_widths(&[64, 32]);
        let q = quantize_network(&mlp, GgmlDType::Q8_0).unwrap();
        // q8_0: 34 bytes per 32 weights; plus the f32 bias.
        assert_eq!(q.model.size_bytes(), 64 * 32 / 32 * 34 + 32 * 4);
        let q4 = quantize_network(&mlp, GgmlDType::Q4_0).unwrap();
        assert_eq!(q4.model.size_bytes(), 64 * 32 / 32 * 18 + 32 * 4);
    }
}
