//! The network type of the digits models: optional 3x3 convolutions (padding 1, ReLU) over the
//! 8x8 image followed by a 2x2 max pool, then fully connected layers with ReLU between them. An MLP
//! is the case with no convolution. Weights are named `conv{i}.weight|bias` and
//! `layers.{i}.weight|bias`, and the shapes alone describe the architecture, so a weight file is
//! enough to rebuild the network.

use std::collections::HashMap;

use candle_core::{Device, Module, Tensor, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::digits::data::{DIGITS_CLASSES, DIGITS_FEATURES};
use crate::error::{ModelError, Result};
use crate::layer::{DenseLayer, LayerReport};

/// Side of the square input image.
pub const IMAGE_SIDE: usize = 8;

/// The shape of a network: convolution channels, then hidden widths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetSpec {
    /// Output channels of each 3x3 convolution (empty for an MLP).
    pub conv_channels: Vec<usize>,
    /// Widths of the hidden fully connected layers.
    pub hidden: Vec<usize>,
}

/// A 3x3 convolution with padding 1 and a bias; weight `out x in x 3 x 3`, f32.
#[derive(Debug, Clone)]
pub struct ConvLayer {
    /// Name (`conv0`, ...).
    pub name: String,
    /// The kernel.
    pub weight: Tensor,
    /// The bias, length `out`.
    pub bias: Tensor,
}

impl ConvLayer {
    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Parameters.
    pub fn parameter_count(&self) -> usize {
        self.weight.elem_count() + self.bias.elem_count()
    }

    /// The layer's report (convolutions stay f32: candle has no quantized convolution).
    pub fn report(&self) -> Result<LayerReport> {
        let values = self.weight.flatten_all()?.to_vec1::<f32>()?;
        let zeros = values.iter().filter(|v| **v == 0.0).count();
        Ok(LayerReport {
            name: self.name.clone(),
            in_dim: self.in_channels() * 9,
            out_dim: self.out_channels(),
            format: "f32".into(),
            note: Some(
                "3x3 convolution, runs dense (candle has no quantized or sparse convolution)"
                    .into(),
            ),
            weight_sparsity: zeros as f64 / values.len().max(1) as f64,
            bytes: self.parameter_count() * 4,
        })
    }
}

impl Module for ConvLayer {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let out = self.out_channels();
        x.conv2d(&self.weight, 1, 1, 1, 1)?
            .broadcast_add(&self.bias.reshape((1, out, 1, 1))?)
    }
}

/// A digits classifier; each fully connected layer may have its own storage.
#[derive(Debug, Clone)]
pub struct Network {
    /// Convolutions, input first (empty for an MLP).
    pub convs: Vec<ConvLayer>,
    /// Fully connected layers, input first.
    pub dense: Vec<DenseLayer>,
}

impl Network {
    /// The same network on `device`.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        Ok(Self {
            convs: self
                .convs
                .iter()
                .map(|c| {
                    Ok(ConvLayer {
                        name: c.name.clone(),
                        weight: c.weight.to_device(device)?,
                        bias: c.bias.to_device(device)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            dense: self
                .dense
                .iter()
                .map(|l| l.to_device(device))
                .collect::<Result<Vec<_>>>()?,
        })
    }

    /// Logits for a batch `rows x 64` (pixels scaled to 0..1).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        if !self.convs.is_empty() {
            let rows = x.dim(0)?;
            h = h.reshape((rows, 1, IMAGE_SIDE, IMAGE_SIDE))?;
            for conv in &self.convs {
                h = conv.forward(&h)?.relu()?;
            }
            h = h.max_pool2d(2)?.flatten_from(1)?;
        }
        for (i, layer) in self.dense.iter().enumerate() {
            h = layer.forward(&h)?;
            if i + 1 < self.dense.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    }

    /// Number of parameters.
    pub fn parameter_count(&self) -> usize {
        self.convs
            .iter()
            .map(ConvLayer::parameter_count)
            .sum::<usize>()
            + self
                .dense
                .iter()
                .map(DenseLayer::parameter_count)
                .sum::<usize>()
    }

    /// Multiply-adds of one image, counted as 2 FLOPs each: every 3x3 convolution (padding 1,
    /// stride 1) keeps the `IMAGE_SIDE` x `IMAGE_SIDE` map, so it costs 2 x in x 9 x out per
    /// pixel; every fully connected layer 2 x in x out. Biases, ReLU and pooling are not counted
    /// (under 1% here), as for an MLP.
    pub fn flops_per_item(&self) -> f64 {
        let pixels = (IMAGE_SIDE * IMAGE_SIDE) as f64;
        let convs: f64 = self
            .convs
            .iter()
            .map(|c| 2.0 * (c.in_channels() * 9 * c.out_channels()) as f64 * pixels)
            .sum();
        let dense: f64 = self
            .dense
            .iter()
            .map(|l| 2.0 * (l.in_dim * l.out_dim) as f64)
            .sum();
        convs + dense
    }

    /// Number of non-zero parameters.
    pub fn nonzero_parameter_count(&self) -> Result<usize> {
        let mut n = 0;
        for t in self.to_tensors()?.values() {
            n += t
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .filter(|v| **v != 0.0)
                .count();
        }
        Ok(n)
    }

    /// Bytes of all weights and biases as stored.
    pub fn size_bytes(&self) -> usize {
        self.convs
            .iter()
            .map(|c| c.parameter_count() * 4)
            .sum::<usize>()
            + self.dense.iter().map(DenseLayer::size_bytes).sum::<usize>()
    }

    /// The f32 weights by name, for safetensors.
    pub fn to_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut map = HashMap::new();
        for (i, c) in self.convs.iter().enumerate() {
            map.insert(format!("conv{i}.weight"), c.weight.clone());
            map.insert(format!("conv{i}.bias"), c.bias.clone());
        }
        for (i, layer) in self.dense.iter().enumerate() {
            map.insert(format!("layers.{i}.weight"), layer.weight_f32()?);
            map.insert(format!("layers.{i}.bias"), layer.bias.clone());
        }
        Ok(map)
    }

    /// Rebuilds an f32 network from `to_tensors`' output; `origin` names the source in errors.
    pub fn from_tensors(map: &HashMap<String, Tensor>, origin: &str) -> Result<Self> {
        let bad = |m: String| ModelError::Invalid(format!("{origin}: {m}"));
        let mut convs: Vec<ConvLayer> = Vec::new();
        for i in 0.. {
            let (Some(w), Some(b)) = (
                map.get(&format!("conv{i}.weight")),
                map.get(&format!("conv{i}.bias")),
            ) else {
                break;
            };
            let in_expected = convs.last().map_or(1, ConvLayer::out_channels);
            if w.rank() != 4 || w.dims()[1] != in_expected {
                return Err(bad(format!("conv{i}.weight has shape {:?}", w.dims())));
            }
            convs.push(ConvLayer {
                name: format!("conv{i}"),
                weight: w.clone(),
                bias: b.clone(),
            });
        }
        let mut dense: Vec<DenseLayer> = Vec::new();
        let mut width = match convs.last() {
            Some(c) => c.out_channels() * (IMAGE_SIDE / 2) * (IMAGE_SIDE / 2),
            None => DIGITS_FEATURES,
        };
        for i in 0.. {
            let (Some(w), Some(b)) = (
                map.get(&format!("layers.{i}.weight")),
                map.get(&format!("layers.{i}.bias")),
            ) else {
                break;
            };
            let layer = DenseLayer::from_f32(format!("layers.{i}"), w, b.clone())?;
            if layer.in_dim != width {
                return Err(bad(format!(
                    "layers.{i} takes {} inputs but receives {width}",
                    layer.in_dim
                )));
            }
            width = layer.out_dim;
            dense.push(layer);
        }
        if dense.is_empty() || width != DIGITS_CLASSES {
            return Err(bad(format!(
                "no fully connected head ending in {DIGITS_CLASSES} classes"
            )));
        }
        Ok(Self { convs, dense })
    }

    /// A freshly initialised network of shape `spec` (uniform in +-1/sqrt(fan_in), PyTorch's
    /// default), drawn from a generator seeded with `seed`.
    pub fn init(spec: &NetSpec, seed: u64) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut convs = Vec::new();
        let mut channels = 1;
        for (i, &out) in spec.conv_channels.iter().enumerate() {
            let fan_in = channels * 9;
            convs.push(ConvLayer {
                name: format!("conv{i}"),
                weight: uniform(&mut rng, fan_in, &[out, channels, 3, 3])?,
                bias: uniform(&mut rng, fan_in, &[out])?,
            });
            channels = out;
        }
        let mut width = if convs.is_empty() {
            DIGITS_FEATURES
        } else {
            channels * (IMAGE_SIDE / 2) * (IMAGE_SIDE / 2)
        };
        let mut dense = Vec::new();
        let widths: Vec<usize> = spec
            .hidden
            .iter()
            .copied()
            .chain([DIGITS_CLASSES])
            .collect();
        for (i, &out) in widths.iter().enumerate() {
            let w = uniform(&mut rng, width, &[out, width])?;
            let b = uniform(&mut rng, width, &[out])?;
            dense.push(DenseLayer::from_f32(format!("layers.{i}"), &w, b)?);
            width = out;
        }
        Ok(Self { convs, dense })
    }
}

fn uniform(rng: &mut ChaCha8Rng, fan_in: usize, shape: &[usize]) -> Result<Tensor> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.gen_range(-bound..bound)).collect();
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

/// Predicted class per row of `logits`.
pub fn predictions(logits: &Tensor) -> Result<Vec<u32>> {
    Ok(logits.argmax(D::Minus1)?.to_vec1::<u32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cnn_counts_its_convolutions_at_the_image_size() {
        let spec = NetSpec {
            conv_channels: vec![8, 16],
            hidden: vec![32],
        };
        let net = Network::init(&spec, 1).unwrap();
        let pixels = (IMAGE_SIDE * IMAGE_SIDE) as f64;
        let convs = 2.0 * (9.0 * 8.0) * pixels + 2.0 * (8.0 * 9.0 * 16.0) * pixels;
        let dense = 2.0 * (16.0 * 16.0 * 32.0) + 2.0 * (32.0 * DIGITS_CLASSES as f64);
        assert_eq!(net.flops_per_item(), convs + dense);
        // An MLP: its fully connected layers only.
        let mlp = Network::init(
            &NetSpec {
                conv_channels: vec![],
                hidden: vec![32],
            },
            1,
        )
        .unwrap();
        let expected = 2.0 * (DIGITS_FEATURES * 32) as f64 + 2.0 * (32 * DIGITS_CLASSES) as f64;
        assert_eq!(mlp.flops_per_item(), expected);
    }
}
