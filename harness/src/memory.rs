//! Resident memory of the current process: its peak (`VmHWM`), its current size (`VmRSS`), and a
//! reset of the peak (Linux's `clear_refs`), so that a worker can tell the model's own memory
//! from its harness's.

/// Peak resident set size of this process in bytes (`VmHWM` in `/proc/self/status` on Linux).
/// `None` where the platform does not expose it; the record then leaves the column empty.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

/// Resident set size of this process now, in bytes (`VmRSS`); `None` where not exposed.
pub fn current_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kib(&status, "VmRSS:")
}

/// Returns the heap memory the allocator holds free to the system (glibc's `malloc_trim(0)`), so
/// that the resident size read next counts the memory in use rather than what building the model
/// freed: once a block over its mapping threshold is freed, glibc serves blocks of up to 32 MB
/// from its heaps and keeps them resident after they are freed (a language model's base weights,
/// dropped once its variant is made, stayed in the worker's resident size). True where memory was
/// released; false where none was, or the C library is not glibc (then nothing is done).
pub fn release_free_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` takes no pointers; it walks the allocator's own free lists under
        // the allocator's locks.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Resets this process's peak resident size to its current size (writing `5` to
/// `/proc/self/clear_refs`, Linux 4.0 and later); false where that is not possible, and the
/// peak then stays the process's whole-life peak.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The `VmHWM:` line of a `/proc/<pid>/status` text, in bytes.
pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    parse_status_kib(status, "VmHWM:")
}

/// A `<field> <n> kB` line of a `/proc/<pid>/status` text, in bytes.
fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line
        .trim_start_matches(field)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_hwm() {
        let text = "Name:\tx\nVmPeak:\t  100 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_vm_hwm(text), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
        assert_eq!(parse_status_kib(text, "VmRSS:"), Some(1024));
    }

    #[test]
    fn heap_blocks_freed_while_building_leave_the_resident_size() {
        if !cfg!(all(target_os = "linux", target_env = "gnu")) {
            eprintln!("SKIPPED: releasing freed heap memory needs glibc on Linux");
            return;
        }
        // 2048 blocks of 32 KiB (under glibc's mapping threshold, so they live in a heap),
        // written; every other one freed, so the 32 MiB freed lie in holes between blocks in
        // use, where the heap cannot shrink from its top.
        let mut blocks: Vec<Option<Vec<u8>>> =
            (0..2048).map(|_| Some(vec![1u8; 32 << 10])).collect();
        for block in blocks.iter_mut().step_by(2) {
            *block = None;
        }
        let before = current_rss_bytes().expect("VmRSS on Linux");
        assert!(release_free_heap(), "32 MiB were free in the heap");
        let after = current_rss_bytes().expect("VmRSS on Linux");
        // Other tests run beside this one: at least a quarter of the 32 MiB must have gone.
        assert!(
            before.saturating_sub(after) >= 8 << 20,
            "resident {before} bytes before, {after} after"
        );
        drop(blocks);
    }

    #[test]
    fn a_reset_peak_drops_to_the_current_size() {
        if !cfg!(target_os = "linux") || !reset_peak_rss() {
            eprintln!("SKIPPED: /proc/self/clear_refs cannot reset the peak here");
            return;
        }
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        drop(big);
        let before = peak_rss_bytes().unwrap();
        assert!(reset_peak_rss());
        let after = peak_rss_bytes().unwrap();
        assert!(after + (32 << 20) < before, "{after} vs {before}");
    }

    #[test]
    fn this_process_has_a_peak() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().unwrap() > 0);
        }
    }
}
