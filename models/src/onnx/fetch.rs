//! `slimbench fetch onnxruntime`: ONNX Runtime's library from the `onnxruntime` wheel on PyPI
//! (one pinned wheel, whatever Python runs pip), its checksum checked, written into the models
//! cache with its provenance.

use std::path::Path;

use crate::cache::sha256_hex;
use crate::error::Result;
use crate::fetch::{data_err, pip_wheel_files_for, write_atomic, Fetched};
use crate::onnx::runtime::{ORT_DIR, ORT_LIBRARY, ORT_RELEASE};

/// The wheel the library comes from.
pub const ORT_PYPI: &str = "onnxruntime==1.31.0";
/// pip's flags that pick the one wheel (CPython 3.11, manylinux_2_28, x86-64).
pub const ORT_WHEEL_SELECT: &[&str] = &[
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
    "--platform",
    "manylinux_2_28_x86_64",
];
/// The library's path inside the wheel.
pub const ORT_WHEEL_PATH: &str = "onnxruntime/capi/libonnxruntime.so.1.31.0";
/// sha256 of the library in onnxruntime-1.31.0-cp311-cp311-manylinux_2_28_x86_64.whl.
pub const ORT_LIBRARY_SHA256: &str =
    "21901b1b02233484b80888c16f4f5473742f796bf5528d5d0c4073dbe9802001";

fn present(dir: &Path) -> bool {
    std::fs::read(dir.join(ORT_LIBRARY))
        .map(|b| sha256_hex(&b) == ORT_LIBRARY_SHA256)
        .unwrap_or(false)
}

/// Fetches ONNX Runtime's library into `models_dir/onnxruntime` (skipped when a valid one is
/// there). Linux on x86-64 only: elsewhere, `ORT_DYLIB_PATH` names a library.
pub fn fetch_onnxruntime(models_dir: &Path) -> Result<Fetched> {
    let dir = models_dir.join(ORT_DIR);
    if present(&dir) {
        return Ok(Fetched {
            dir,
            already_present: true,
        });
    }
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        return Err(data_err(
            ORT_PYPI,
            "slimbench fetches ONNX Runtime for Linux on x86-64 only; on this system install \
             ONNX Runtime 1.31 or later and set ORT_DYLIB_PATH to its library",
        ));
    }
    let mut files = pip_wheel_files_for(ORT_PYPI, ORT_WHEEL_SELECT, &[ORT_WHEEL_PATH])?;
    let library = files.remove(0);
    let got = sha256_hex(&library);
    if got != ORT_LIBRARY_SHA256 {
        return Err(data_err(
            ORT_WHEEL_PATH,
            format!("sha256 {got}, expected {ORT_LIBRARY_SHA256}; not writing it"),
        ));
    }
    write_atomic(&dir.join(ORT_LIBRARY), &library)?;
    write_atomic(
        &dir.join("PROVENANCE.md"),
        format!(
            "# ONNX Runtime {ORT_RELEASE}\n\nMicrosoft's ONNX Runtime (CPU), licence MIT.\n\
             Fetched by `slimbench fetch onnxruntime` from the PyPI wheel `{ORT_PYPI}` \
             (pip download {}), file {ORT_WHEEL_PATH}.\n{ORT_LIBRARY} sha256 {ORT_LIBRARY_SHA256}.\n\
             Loaded at run time by the `ort` crate 2.0.0-rc.15 (C API 31).\n",
            ORT_WHEEL_SELECT.join(" ")
        )
        .as_bytes(),
    )?;
    Ok(Fetched {
        dir,
        already_present: false,
    })
}
