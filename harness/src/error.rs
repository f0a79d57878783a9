//! The harness's own error type: a usage error (bad flags, names, files given by the user), on
//! which the CLI exits 2 with the message; an error caused by the file system (a full disk, a
//! folder that cannot be written) exits [`EXIT_IO`] with advice on what to free; every other
//! failure is an `anyhow` error (exit 1).

/// A usage error: bad flags or names. The CLI exits 2 on it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code of a failure caused by the file system: a full disk, a quota, a folder that
/// cannot be written.
pub const EXIT_IO: u8 = 3;

/// The I/O error behind `e`, if a file-system operation caused it (the first one in its chain).
pub fn io_cause(e: &anyhow::Error) -> Option<&std::io::Error> {
    e.chain().find_map(|c| c.downcast_ref::<std::io::Error>())
}

/// ENOSPC and EDQUOT: no space, or no quota, left on the device.
const NO_SPACE: [i32; 2] = [28, 122];

/// What a person can do about `e`, in one sentence.
pub fn io_advice(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    if e.kind() == ErrorKind::StorageFull
        || e.kind() == ErrorKind::QuotaExceeded
        || e.raw_os_error().is_some_and(|c| NO_SPACE.contains(&c))
    {
        "the disk is full: free space on it (old run folders under reports/, `cargo clean`, the \
         prepared-weights cache), then try again"
    } else if e.kind() == ErrorKind::PermissionDenied || e.kind() == ErrorKind::ReadOnlyFilesystem {
        "the folder cannot be written: give a writable one, or fix its permissions"
    } else {
        "a file could not be read or written: check the disk and the path, then try again"
    }
}
