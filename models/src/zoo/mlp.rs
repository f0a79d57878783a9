//! A multi-layer perceptron classifier (ReLU between fully connected layers), trained with AdamW
//! and cross-entropy from a seeded initialisation, so that a seed gives the same weights.

use std::collections::HashMap;

use candle_core::{Device, Module, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::error::{ModelError, Result};
use crate::layer::{DenseLayer, LayerReport};

/// Shape of an MLP: input width, hidden widths, number of classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Input width.
    pub input: usize,
    /// Widths of the hidden layers, in order.
    pub hidden: Vec<usize>,
    /// Number of output classes.
    pub classes: usize,
}

/// How an MLP is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Rows per optimiser step.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Seed of the initialisation and of the minibatch order.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 40,
            batch_size: 64,
            learning_rate: 3e-3,
            weight_decay: 1e-4,
            seed: 0,
        }
    }
}

/// An MLP ready for inference; each layer may be stored in its own format.
#[derive(Debug, Clone)]
pub struct Mlp {
    /// The fully connected layers, input first.
    pub layers: Vec<DenseLayer>,
}

impl Mlp {
    /// Logits for a batch `rows x input`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if i + 1 < self.layers.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    }

    /// Number of parameters.
    pub fn parameter_count(&self) -> usize {
        self.layers.iter().map(DenseLayer::parameter_count).sum()
    }

    /// Number of non-zero parameters.
    pub fn nonzero_parameter_count(&self) -> Result<usize> {
        self.layers
            .iter()
            .map(DenseLayer::nonzero_parameter_count)
            .sum()
    }

    /// Bytes of all weights and biases as stored.
    pub fn size_bytes(&self) -> usize {
        self.layers.iter().map(DenseLayer::size_bytes).sum()
    }

    /// One report per layer, with its format.
    pub fn layer_reports(&self) -> Vec<LayerReport> {
        self.layers.iter().map(|l| l.report(None)).collect()
    }

    /// The f32 weights by name (`layers.N.weight` is `out x in`, `layers.N.bias`), for safetensors.
    pub fn to_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut map = HashMap::new();
        for (i, layer) in self.layers.iter().enumerate() {
            map.insert(format!("layers.{i}.weight"), layer.weight_f32()?);
            map.insert(format!("layers.{i}.bias"), layer.bias.clone());
        }
        Ok(map)
    }

    /// Rebuilds an f32 MLP from `to_tensors`' output; `origin` names the source in errors.
    pub fn from_tensors(map: &HashMap<String, Tensor>, origin: &str) -> Result<Self> {
        let mut layers = Vec::new();
        for i in 0.. {
            let (Some(w), Some(b)) = (
                map.get(&format!("layers.{i}.weight")),
                map.get(&format!("layers.{i}.bias")),
            ) else {
                break;
            };
            let layer = DenseLayer::from_f32(format!("layers.{i}"), w, b.clone())?;
            if let Some(prev) = layers.last() {
                let prev: &DenseLayer = prev;
                if prev.out_dim != layer.in_dim {
                    return Err(ModelError::Invalid(format!(
                        "{origin}: layers.{i} takes {} inputs but layers.{} gives {}",
                        layer.in_dim,
                        i - 1,
                        prev.out_dim
                    )));
                }
            }
            layers.push(layer);
        }
        if layers.is_empty() {
            return Err(ModelError::Invalid(format!(
                "{origin}: no layers.0.weight / layers.0.bias tensors"
            )));
        }
        Ok(Self { layers })
    }
}

/// Uniform in +-1/sqrt(fan_in), PyTorch's default for Linear, drawn from `rng`.
fn init_uniform(rng: &mut ChaCha8Rng, fan_in: usize, shape: &[usize]) -> Result<Tensor> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.gen_range(-bound..bound)).collect();
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

/// Trains an MLP of shape `config` on `train` with cross-entropy and AdamW.
pub fn train_mlp(config: &MlpConfig, train: &Dataset, tc: &TrainConfig) -> Result<Mlp> {
    if train.dim != config.input || train.classes != config.classes {
        return Err(ModelError::Invalid(format!(
            "MLP expects {} features and {} classes, data has {} and {}",
            config.input, config.classes, train.dim, train.classes
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(tc.seed);
    let mut widths = vec![config.input];
    widths.extend(&config.hidden);
    widths.push(config.classes);
    let mut vars = Vec::new();
    for pair in widths.windows(2) {
        let (fan_in, fan_out) = (pair[0], pair[1]);
        vars.push(Var::from_tensor(&init_uniform(
            &mut rng,
            fan_in,
            &[fan_out, fan_in],
        )?)?);
        vars.push(Var::from_tensor(&init_uniform(
            &mut rng,
            fan_in,
            &[fan_out],
        )?)?);
    }
    let mut optimizer = AdamW::new(
        vars.clone(),
        ParamsAdamW {
            lr: tc.learning_rate,
            weight_decay: tc.weight_decay,
            ..Default::default()
        },
    )?;
    let forward = |x: &Tensor| -> Result<Tensor> {
        let mut h = x.clone();
        let n_layers = vars.len() / 2;
        for i in 0..n_layers {
            h = h
                .matmul(&vars[2 * i].as_tensor().t()?)?
                .broadcast_add(vars[2 * i + 1].as_tensor())?;
            if i + 1 < n_layers {
                h = h.relu()?;
            }
        }
        Ok(h)
    };
    let mut order: Vec<usize> = (0..train.len()).collect();
    for _ in 0..tc.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(tc.batch_size.max(1)) {
            let batch = train.select(chunk);
            let (x, y) = tensors_of(&batch)?;
            let loss = candle_nn::loss::cross_entropy(&forward(&x)?, &y)?;
            optimizer.backward_step(&loss)?;
        }
    }
    let layers = (0..vars.len() / 2)
        .map(|i| {
            DenseLayer::from_f32(
                format!("layers.{i}"),
                vars[2 * i].as_tensor(),
                vars[2 * i + 1].as_tensor().clone(),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Mlp { layers })
}

/// The features (`rows x dim`, f32) and labels (u32) of a data set as tensors.
pub fn tensors_of(data: &Dataset) -> Result<(Tensor, Tensor)> {
    let x = Tensor::from_slice(&data.features, (data.len(), data.dim), &Device::Cpu)?;
    let y = Tensor::from_slice(&data.labels, data.len(), &Device::Cpu)?;
    Ok((x, y))
}

/// Predicted class per row of `logits`.
pub fn predictions(logits: &Tensor) -> Result<Vec<u32>> {
    Ok(logits.argmax(D::Minus1)?.to_vec1::<u32>()?)
}
