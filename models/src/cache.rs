//! The on-disk cache of prepared model weights, keyed by a hash of everything that made them.
//!
//! An entry is a safetensors file and a `.sha256` file beside it. An entry whose checksum does not
//! match, or that does not parse, is rebuilt, never trusted. Writes go to a temporary file that is
//! renamed into place, so a killed run never leaves a half-written entry behind. What building an
//! entry cost is kept beside it (`crate::build_cost`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};

/// Environment variable that sets the cache folder.
pub const CACHE_ENV: &str = "SLIMBENCH_CACHE";

/// The cache folder: `$SLIMBENCH_CACHE`, else `$XDG_CACHE_HOME/slimbench`, else
/// `$HOME/.cache/slimbench`, else `.slimbench-cache` in the working directory.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("slimbench");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".cache").join("slimbench");
    }
    PathBuf::from(".slimbench-cache")
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether an entry came from disk or was built now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Read from a valid entry.
    Hit,
    /// No entry: built and stored.
    Built,
    /// An entry was there but corrupt: rebuilt and replaced.
    Rebuilt,
}

/// Where the entry for `stem` and `key_material` lives.
pub fn entry_path(dir: &Path, stem: &str, key_material: &str) -> PathBuf {
    let key = &sha256_hex(key_material.as_bytes())[..16];
    dir.join(format!("{stem}-{key}.safetensors"))
}

fn read_valid(path: &Path) -> Option<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).ok()?;
    let expected = std::fs::read_to_string(path.with_extension("sha256")).ok()?;
    if expected.trim() != sha256_hex(&bytes) {
        return None;
    }
    candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).ok()
}

fn write_entry(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    // A uniquely named temporary file, so concurrent writers of one entry never mix their bytes.
    let tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)
        .map_err(|e| ModelError::io(dir, e))?;
    candle_core::safetensors::save(tensors, tmp.path())?;
    let bytes = std::fs::read(tmp.path()).map_err(|e| ModelError::io(tmp.path(), e))?;
    let sum_path = path.with_extension("sha256");
    std::fs::write(&sum_path, sha256_hex(&bytes)).map_err(|e| ModelError::io(&sum_path, e))?;
    tmp.persist(path)
        .map_err(|e| ModelError::io(path, e.error))?;
    Ok(())
}

/// Loads the entry at `path`, or builds it with `build` and stores it.
pub fn load_or_build(
    path: &Path,
    build: impl FnOnce() -> Result<HashMap<String, Tensor>>,
) -> Result<(HashMap<String, Tensor>, CacheOutcome)> {
    use crate::build_cost;
    if let Some(tensors) = read_valid(path) {
        // The cost recorded when it was built (none for an entry older than the record).
        if let Some(cost) = build_cost::read_sidecar(path) {
            build_cost::note(cost);
        }
        return Ok((tensors, CacheOutcome::Hit));
    }
    let outcome = if path.exists() {
        CacheOutcome::Rebuilt
    } else {
        CacheOutcome::Built
    };
    let metered = build_cost::start();
    let tensors = build()?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let cost = metered.finish(&build_cost::step_of(path), name);
    write_entry(path, &tensors)?;
    build_cost::write_sidecar(path, &cost);
    build_cost::note(cost);
    Ok((tensors, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_tensor() -> Result<HashMap<String, Tensor>> {
        let t = Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu)?;
        Ok(HashMap::from([("t".to_string(), t)]))
    }

    #[test]
    fn second_load_hits_and_corrupt_entry_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry_path(dir.path(), "m", "key");
        let (_, first) = load_or_build(&path, one_tensor).unwrap();
        assert_eq!(first, CacheOutcome::Built);
        let (_, second) = load_or_build(&path, || panic!("must not rebuild")).unwrap();
        assert_eq!(second, CacheOutcome::Hit);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (tensors, third) = load_or_build(&path, one_tensor).unwrap();
        assert_eq!(third, CacheOutcome::Rebuilt);
        assert_eq!(tensors["t"].to_vec1::<f32>().unwrap(), vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn different_inputs_have_different_entries() {
        let dir = Path::new("/x");
        assert_ne!(entry_path(dir, "m", "a"), entry_path(dir, "m", "b"));
    }
}
