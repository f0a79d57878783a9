//! The names a plan may use: models, techniques, devices; and what each technique means.

use crate::compress::quantize::{format_by_name, QUANT_FORMATS};

/// Models in the zoo, with a one-line description.
pub const MODELS: &[(&str, &str)] = &[(
    "digits-mlp",
    "MLP 64-256-128-10 on the UCI digits (8x8 images), trained here from a fixed seed",
)];

/// The uncompressed baseline technique.
pub const BASELINE: &str = "fp32";

/// Techniques with a one-line description.
pub fn techniques() -> Vec<(String, String)> {
    let mut list = vec![(
        BASELINE.to_string(),
        "the uncompressed model, f32 weights".to_string(),
    )];
    for (name, format) in QUANT_FORMATS {
        list.push((
            name.to_string(),
            format!(
                "weights of every Linear quantized to {name} (block {}) through candle QMatMul",
                format.block_size()
            ),
        ));
    }
    list
}

/// Devices this build can run on, with a one-line description.
pub const DEVICES: &[(&str, &str)] = &[("cpu", "the host CPU, through candle's CPU backend")];

/// The techniques of the default suite.
pub const DEFAULT_TECHNIQUES: &[&str] = &["fp32", "q8_0", "q4_0"];

/// The models of the default suite.
pub const DEFAULT_MODELS: &[&str] = &["digits-mlp"];

/// True when `name` is a known model.
pub fn is_model(name: &str) -> bool {
    MODELS.iter().any(|(n, _)| *n == name)
}

/// True when `name` is a known technique.
pub fn is_technique(name: &str) -> bool {
    name == BASELINE || format_by_name(name).is_some()
}

/// True when `name` is a device this build knows.
pub fn is_device(name: &str) -> bool {
    DEVICES.iter().any(|(n, _)| *n == name)
}
