//! Standard output that a closed pipe (`slimbench run --json | head -c 10`) cannot crash: once the
//! reader is gone, output stops quietly and the run goes on.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to standard output and flushes it. A broken pipe marks standard output closed, and
/// later calls write nothing; other errors are reported once on standard error. Returns whether
/// the text was written.
pub fn print(text: &str) -> bool {
    if CLOSED.load(Ordering::Relaxed) {
        return false;
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => true,
        Err(e) => {
            CLOSED.store(true, Ordering::Relaxed);
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("warning: cannot write to standard output ({e}); the rest goes to the run folder only");
            }
            false
        }
    }
}

/// [`print()`] with a newline.
pub fn println(text: &str) -> bool {
    print(&format!("{text}\n"))
}

/// Lets a closed pipe end the process quietly, as it ends `cat` or `ls` (Rust ignores SIGPIPE and
/// turns it into a panic at the next `println!`). For commands that only print; `run` keeps
/// running through [`print()`] instead, so no cell is cut short.
pub fn exit_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE is async-signal-safe and done before
    // any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
