//! Device names of a plan (`cpu`, `cuda:N`) and the candle device behind each. CUDA needs the
//! `cuda` cargo feature; without it a `cuda:N` device is an error that says so.

use candle_core::Device;

use crate::error::{ModelError, Result};

/// True when this build has candle's CUDA backend (the `cuda` feature).
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// The host CPU's device name.
pub const CPU: &str = "cpu";

/// The ordinal `N` of a `cuda:N` device name.
pub fn cuda_ordinal(name: &str) -> Option<usize> {
    name.strip_prefix("cuda:")?.parse().ok()
}

/// True for the device names a plan may use: `cpu` and `cuda:N`.
pub fn is_device_name(name: &str) -> bool {
    name == CPU || cuda_ordinal(name).is_some()
}

/// The candle device of `name`.
pub fn candle_device(name: &str) -> Result<Device> {
    if name == CPU {
        return Ok(Device::Cpu);
    }
    let Some(ordinal) = cuda_ordinal(name) else {
        return Err(ModelError::Invalid(format!(
            "unknown device {name:?}; valid devices: cpu, cuda:N"
        )));
    };
    open_cuda(name, ordinal)
}

#[cfg(feature = "cuda")]
fn open_cuda(name: &str, ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| {
        ModelError::Invalid(format!(
            "device {name}: cannot open CUDA device {ordinal}: {e}"
        ))
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(name: &str, _ordinal: usize) -> Result<Device> {
    Err(ModelError::Invalid(format!(
        "device {name}: this slimbench was built without the cuda feature \
         (build with `--features cuda`, see scripts/gpu-check.sh)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_cpu_always_opens() {
        assert_eq!(cuda_ordinal("cuda:1"), Some(1));
        assert_eq!(cuda_ordinal("cuda"), None);
        assert!(is_device_name("cpu") && is_device_name("cuda:0") && !is_device_name("gpu"));
        assert!(candle_device("cpu").unwrap().is_cpu());
        assert!(candle_device("tpu:0")
            .unwrap_err()
            .to_string()
            .contains("valid devices"));
        if !CUDA_BUILT {
            let e = candle_device("cuda:0").unwrap_err().to_string();
            assert!(e.contains("built without the cuda feature"), "{e}");
        }
    }
}
