//! The machine's physical limits, measured: peak f32 FLOP/s (independent fused multiply-adds in
//! the widest vectors the CPU has, on every thread) and memory read bandwidth (a sum over a
//! buffer far larger than the caches). `slimbench calibrate` stores them; each CPU record then
//! says what fraction of the peak its variant reached.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use slimbench_models::kernels::peak::{peak_gflops, peak_int8_gops, read_bandwidth_gbs};

/// The file a calibration is stored in, inside the cache folder.
pub const CALIBRATION_FILE: &str = "calibration.json";

/// The measured limits of one machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The CPU, as [`crate::host::HostInfo`] reports it: a calibration applies to this CPU only.
    pub cpu_model: String,
    /// Threads the micro-benchmarks ran on.
    pub threads: usize,
    /// The vector path of the FMA loop (`avx512`, `avx2`, `portable`).
    pub vector_path: String,
    /// Peak f32 throughput, GFLOP/s (a fused multiply-add counts two).
    pub peak_gflops: f64,
    /// Peak int8 throughput, GOP/s (a multiply-add counts two), through the instructions of the
    /// integer kernels (`int8` and the GGML block formats); absent on their portable path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_int8_gops: Option<f64>,
    /// Which instructions `peak_int8_gops` measured: `int8-vnni` (AVX-512 VNNI; calibrations
    /// written before this field existed measured only that) or `int8-avx2`; `null` on the
    /// portable path (written out, so that it does not read back as the default).
    #[serde(default = "vnni_path")]
    pub int8_path: Option<String>,
    /// Memory read bandwidth, GB/s (10^9 bytes).
    pub read_bandwidth_gbs: f64,
    /// When it was measured, RFC 3339 UTC.
    pub measured_utc: String,
}

fn vnni_path() -> Option<String> {
    Some("int8-vnni".into())
}

impl Calibration {
    /// Where the calibration of `cache_dir` lives.
    pub fn path_in(cache_dir: &Path) -> PathBuf {
        cache_dir.join(CALIBRATION_FILE)
    }

    /// Writes the calibration as JSON.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        crate::atomic::write(path, (text + "\n").as_bytes())
    }

    /// Reads a calibration; a missing file is `Ok(None)`, a malformed one an error naming it.
    pub fn load(path: &Path) -> anyhow::Result<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let c = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a slimbench calibration; run `slimbench calibrate` again",
                path.display()
            )
        })?;
        Ok(Some(c))
    }

    /// The calibration in `cache_dir` if it was measured on a CPU named `cpu_model`.
    pub fn for_cpu(cache_dir: &Path, cpu_model: &str) -> anyhow::Result<Option<Self>> {
        Ok(Self::load(&Self::path_in(cache_dir))?.filter(|c| c.cpu_model == cpu_model))
    }
}

/// Measures this machine on `threads` threads (about two seconds).
pub fn calibrate(cpu_model: &str, threads: usize) -> Calibration {
    let threads = threads.max(1);
    let (vector_path, peak) = peak_gflops(threads, 200, 5);
    let bandwidth = read_bandwidth_gbs(threads, 512 << 20, 4);
    let int8 = peak_int8_gops(threads, 200, 5);
    Calibration {
        cpu_model: cpu_model.to_string(),
        threads,
        vector_path: vector_path.to_string(),
        peak_gflops: peak,
        peak_int8_gops: int8.map(|(_, p)| p),
        int8_path: int8.map(|(name, _)| name.to_string()),
        read_bandwidth_gbs: bandwidth,
        measured_utc: crate::results::now_utc(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calibration_applies_to_its_cpu_only_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Calibration::for_cpu(dir.path(), "X").unwrap().is_none());
        let c = Calibration {
            cpu_model: "X".into(),
            threads: 2,
            vector_path: "avx2".into(),
            peak_gflops: 100.0,
            peak_int8_gops: None,
            int8_path: None,
            read_bandwidth_gbs: 20.0,
            measured_utc: "2026-01-01T00:00:00Z".into(),
        };
        c.save(&Calibration::path_in(dir.path())).unwrap();
        assert_eq!(Calibration::for_cpu(dir.path(), "X").unwrap(), Some(c));
        assert!(Calibration::for_cpu(dir.path(), "Y").unwrap().is_none());
        std::fs::write(Calibration::path_in(dir.path()), "{").unwrap();
        let err = Calibration::for_cpu(dir.path(), "X")
            .unwrap_err()
            .to_string();
        assert!(err.contains("calibration.json"), "{err}");
    }
}
