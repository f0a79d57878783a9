//! The model zoo: the network type shared by the digits models, and one file a model family.

pub mod cnn;
pub mod mlp;
pub mod net;
