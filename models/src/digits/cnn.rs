//! The digits CNN: two 3x3 convolutions (8 and 16 channels, padding 1, ReLU), a 2x2 max pool, and
//! a linear head from 16x4x4 to 10 classes (3,818 parameters). Small enough to train in seconds on
//! 2 cores (candle's CPU convolution backward is the slow part), and it has channels for structured
//! pruning to cut.

use super::net::NetSpec;

/// Name in the catalogue.
pub const NAME: &str = "digits-cnn";

/// The teacher's shape.
pub fn spec() -> NetSpec {
    NetSpec {
        conv_channels: vec![8, 16],
        hidden: vec![],
    }
}

/// The default distillation student: 3 and 5 channels (980 parameters, 26% of the teacher).
pub fn student_spec() -> NetSpec {
    NetSpec {
        conv_channels: vec![3, 5],
        hidden: vec![],
    }
}

/// Training: 15 epochs (convolutions cost more per step than the MLP's matmuls).
pub fn train_config() -> crate::digits::train::TrainConfig {
    crate::digits::train::TrainConfig {
        epochs: 15,
        learning_rate: 5e-3,
        ..Default::default()
    }
}
