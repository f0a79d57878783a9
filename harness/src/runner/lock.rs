//! An exclusive lock on a run folder while a run or a resume writes it, so two writers never run
//! the same cells twice or time each other's load.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::UsageError;

/// The lock file inside a run folder.
pub const LOCK_FILE: &str = "run.lock";

/// Holds the lock until dropped (the kernel also releases it when the process dies).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the exclusive lock of `run_dir`, or fails with a usage error that names the holder.
    pub fn acquire(run_dir: &Path) -> Result<Self, UsageError> {
        let path = run_dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| UsageError(format!("cannot open {}: {e}", path.display())))?;
        if !try_lock_exclusive(&file) {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(UsageError(format!(
                "{} is being written by another slimbench ({}); wait for it to finish, or stop it, then resume",
                run_dir.display(),
                if holder.is_empty() { "holder unknown" } else { holder }
            )));
        }
        let who = format!(
            "pid {} since {}",
            std::process::id(),
            crate::results::now_utc()
        );
        let written = file
            .set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(who.as_bytes()))
            .and_then(|_| file.flush());
        if let Err(e) = written {
            eprintln!("warning: cannot write {}: {e}", path.display());
        }
        Ok(Self { _file: file, path })
    }

    /// Where the lock lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(unix)]
fn try_lock_exclusive(file: &File) -> bool {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a file descriptor this function's caller owns for the whole call.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(not(unix))]
fn try_lock_exclusive(_file: &File) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_folder_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let e = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(&format!("pid {}", std::process::id())),
            "names the holder: {e}"
        );
        drop(first);
        RunLock::acquire(dir.path()).unwrap();
    }
}
