//! Training of the digits networks: AdamW on cross-entropy, or on a distillation loss against a
//! teacher's soft targets; optional masks keep pruned weights at zero through a fine-tune.

use std::collections::{BTreeMap, HashMap};

use candle_core::{Tensor, Var, D};
use candle_nn::ops::{log_softmax, softmax_last_dim};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::digits::data::Dataset;
use crate::digits::net::Network;
use crate::error::Result;

/// How a network is trained.
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
    /// Seed of the minibatch order.
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

/// Knowledge distillation (Hinton et al., 2015): loss = alpha T^2 KL(teacher/T || student/T)
/// + (1 - alpha) cross-entropy(labels).
#[derive(Debug, Clone)]
pub struct Distillation<'a> {
    /// The teacher.
    pub teacher: &'a Network,
    /// Softmax temperature T.
    pub temperature: f64,
    /// Weight of the soft-target term.
    pub alpha: f64,
}

/// Masks by weight name (1 keeps a weight, 0 holds it at zero).
pub type Masks = HashMap<String, Tensor>;

/// The features (`rows x dim`, f32) and labels (u32) of a data set as tensors.
pub fn tensors_of(data: &Dataset) -> Result<(Tensor, Tensor)> {
    let device = candle_core::Device::Cpu;
    let x = Tensor::from_slice(&data.features, (data.len(), data.dim), &device)?;
    let y = Tensor::from_slice(&data.labels, data.len(), &device)?;
    Ok((x, y))
}

fn distill_loss(
    student: &Tensor,
    teacher: &Tensor,
    labels: &Tensor,
    d: &Distillation,
) -> Result<Tensor> {
    let t = d.temperature;
    let p_teacher = softmax_last_dim(&(teacher / t)?)?;
    let log_p_teacher = log_softmax(&(teacher / t)?, D::Minus1)?;
    let log_p_student = log_softmax(&(student / t)?, D::Minus1)?;
    let rows = student.dim(0)? as f64;
    let kl = ((p_teacher * (log_p_teacher - log_p_student)?)?.sum_all()? / rows)?;
    let ce = candle_nn::loss::cross_entropy(student, labels)?;
    Ok(((kl * (d.alpha * t * t))? + (ce * (1.0 - d.alpha))?)?)
}

/// Trains `start` on `data`; `masks` hold pruned weights at zero; `distill` switches to the
/// distillation loss. Deterministic for a given `start`, data and config.
pub fn train(
    start: &Network,
    data: &Dataset,
    tc: &TrainConfig,
    masks: Option<&Masks>,
    distill: Option<&Distillation>,
) -> Result<Network> {
    let initial: BTreeMap<String, Tensor> = start.to_tensors()?.into_iter().collect();
    let mut vars: BTreeMap<String, Var> = BTreeMap::new();
    for (name, t) in &initial {
        vars.insert(name.clone(), Var::from_tensor(t)?);
    }
    let mut optimizer = AdamW::new(
        vars.values().cloned().collect(),
        ParamsAdamW {
            lr: tc.learning_rate,
            weight_decay: tc.weight_decay,
            ..Default::default()
        },
    )?;
    let current = |vars: &BTreeMap<String, Var>, detach: bool| -> Result<Network> {
        let map: HashMap<String, Tensor> = vars
            .iter()
            .map(|(k, v)| {
                let t = v.as_tensor();
                (k.clone(), if detach { t.detach() } else { t.clone() })
            })
            .collect();
        Network::from_tensors(&map, "training")
    };
    let mut rng = ChaCha8Rng::seed_from_u64(tc.seed);
    let mut order: Vec<usize> = (0..data.len()).collect();
    for _ in 0..tc.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(tc.batch_size.max(1)) {
            let (x, y) = tensors_of(&data.select(chunk))?;
            let logits = current(&vars, false)?.forward(&x)?;
            let loss = match distill {
                Some(d) => distill_loss(&logits, &d.teacher.forward(&x)?, &y, d)?,
                None => candle_nn::loss::cross_entropy(&logits, &y)?,
            };
            optimizer.backward_step(&loss)?;
            if let Some(masks) = masks {
                for (name, mask) in masks {
                    if let Some(var) = vars.get(name) {
                        var.set(&var.as_tensor().mul(mask)?)?;
                    }
                }
            }
        }
    }
    current(&vars, true)
}
