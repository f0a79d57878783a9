//! The digits MLP: 64 pixels, hidden layers of 256 and 128 with ReLU, 10 classes (50,826 parameters).

use super::net::NetSpec;

/// Name in the catalogue.
pub const NAME: &str = "digits-mlp";

/// The teacher's shape.
pub fn spec() -> NetSpec {
    NetSpec {
        conv_channels: vec![],
        hidden: vec![256, 128],
    }
}

/// The default distillation student: hidden 128 and 32 (12,778 parameters, 25% of the teacher).
pub fn student_spec() -> NetSpec {
    NetSpec {
        conv_channels: vec![],
        hidden: vec![128, 32],
    }
}

/// Training: the defaults (40 epochs of AdamW, batch 64, learning rate 3e-3).
pub fn train_config() -> crate::digits::train::TrainConfig {
    crate::digits::train::TrainConfig::default()
}
