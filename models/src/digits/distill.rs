//! Knowledge distillation (Hinton, Vinyals and Dean, 2015, "Distilling the Knowledge in a Neural
//! Network"): a smaller student learns from the teacher's temperature-softened outputs and the
//! labels. The same student trained on the labels alone is the control that shows what the soft
//! targets added.

use crate::digits::data::Dataset;
use crate::digits::net::{NetSpec, Network};
use crate::digits::train::{train, Distillation, TrainConfig};
use crate::error::Result;

/// Default temperature T.
pub const DEFAULT_TEMPERATURE: f64 = 4.0;
/// Default weight of the soft-target term.
pub const DEFAULT_ALPHA: f64 = 0.7;

/// Trains a student of shape `student` from `teacher` on `train_set`.
pub fn distill(
    teacher: &Network,
    student: &NetSpec,
    train_set: &Dataset,
    tc: &TrainConfig,
    temperature: f64,
    alpha: f64,
) -> Result<Network> {
    let start = Network::init(student, tc.seed.wrapping_add(1))?;
    train(
        &start,
        train_set,
        tc,
        None,
        Some(&Distillation {
            teacher,
            temperature,
            alpha,
        }),
    )
}

/// Trains the same student on the labels alone (the control).
pub fn train_control(student: &NetSpec, train_set: &Dataset, tc: &TrainConfig) -> Result<Network> {
    let start = Network::init(student, tc.seed.wrapping_add(1))?;
    train(&start, train_set, tc, None, None)
}
