//! Builds fake powercap sysfs trees in a temp dir, in the layout the kernel uses.

use std::path::{Path, PathBuf};

/// Writes a zone folder `root/dir` with `name`, `energy_uj` and `max_energy_range_uj`.
pub fn zone(root: &Path, dir: &str, name: &str, energy_uj: u64, max_uj: u64) -> PathBuf {
    let path = root.join(dir);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("name"), format!("{name}\n")).unwrap();
    std::fs::write(path.join("energy_uj"), format!("{energy_uj}\n")).unwrap();
    std::fs::write(path.join("max_energy_range_uj"), format!("{max_uj}\n")).unwrap();
    path
}

/// Sets a zone's counter.
pub fn set(zone: &Path, energy_uj: u64) {
    std::fs::write(zone.join("energy_uj"), format!("{energy_uj}\n")).unwrap();
}

/// A typical max range of a package counter (about 262 kJ).
pub const MAX: u64 = 262_143_328_850;
