//! Writing an output file whole or not at all: the bytes go to a temporary file in the same
//! folder, which is flushed to disk and renamed over the target, so an interrupted or disk-full
//! write leaves the previous complete file (or none), never a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// A temporary name beside `path`: `.tmp-<pid>-<random>.<name>` (hidden, never an output name,
/// and with the target's extension, which encoders such as the PNG writer go by).
fn temporary_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "output".into());
    path.with_file_name(format!(
        ".tmp-{}-{:08x}.{name}",
        std::process::id(),
        rand::random::<u32>()
    ))
}

/// Flushes the folder holding `path`, so that a rename into it survives a power cut (best effort:
/// some file systems cannot sync a folder).
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Writes the file at `path` through `produce`, which is given a temporary path beside it to
/// create and fill; once `produce` succeeds the file is flushed and renamed over `path`. On any
/// error the temporary file is removed and `path` is left as it was.
pub fn replace_with(
    path: &Path,
    produce: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let tmp = temporary_beside(path);
    let result = produce(&tmp)
        .and_then(|()| {
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot flush {} to disk", tmp.display()))
        })
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else {
        sync_parent(path);
    }
    result.with_context(|| {
        format!(
            "cannot write {} (any earlier file is kept whole)",
            path.display()
        )
    })
}

/// Writes `bytes` to `path` whole or not at all (see [`replace_with`]).
pub fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    replace_with(path, |tmp| {
        let mut file = std::fs::File::create(tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(bytes)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        Ok(())
    })
}

/// Copies `from` to `to` whole or not at all.
pub fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    replace_with(to, |tmp| {
        std::fs::copy(from, tmp)
            .map(|_| ())
            .with_context(|| format!("cannot copy {} to {}", from.display(), tmp.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_keeps_the_earlier_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.json");
        write(&path, b"first, complete").unwrap();
        let e = replace_with(&path, |tmp| {
            std::fs::write(tmp, b"half of the")?;
            Err(std::io::Error::from_raw_os_error(28).into())
        })
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("earlier file is kept whole"),
            "{e:#}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"first, complete");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("results.json")]);
        write(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
    }
}
