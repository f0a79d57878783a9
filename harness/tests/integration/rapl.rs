//! RAPL against fake powercap trees: packages, sub-zones, wraps, bad counters.

use slimbench::meter::rapl::{read_error, RaplMeter};
use slimbench::meter::{DomainKind, EnergyMeter, MeterError};

use crate::fake_powercap::{set, zone, MAX};

#[test]
fn one_package_reads_joules_since_open() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = zone(dir.path(), "intel-rapl:0", "package-0", 5_000_000, MAX);
    let mut m = RaplMeter::open(dir.path()).unwrap();
    assert_eq!(m.domains().len(), 1);
    assert_eq!(m.domains()[0].kind, DomainKind::CpuPackage);
    set(&pkg, 7_500_000);
    assert_eq!(m.read_joules().unwrap(), vec![2.5]);
}

#[test]
fn two_packages_are_read_separately() {
    let dir = tempfile::tempdir().unwrap();
    let p0 = zone(dir.path(), "intel-rapl:0", "package-0", 0, MAX);
    let p1 = zone(dir.path(), "intel-rapl:1", "package-1", 0, MAX);
    let mut m = RaplMeter::open(dir.path()).unwrap();
    let names: Vec<_> = m.domains().iter().map(|d| d.name.clone()).collect();
    assert_eq!(names, ["package-0", "package-1"]);
    set(&p0, 1_000_000);
    set(&p1, 3_000_000);
    assert_eq!(m.read_joules().unwrap(), vec![1.0, 3.0]);
}

#[test]
fn dram_is_its_own_domain_and_core_uncore_are_never_added() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = zone(dir.path(), "intel-rapl:0", "package-0", 0, MAX);
    let core = zone(&pkg, "intel-rapl:0:0", "core", 0, MAX);
    let uncore = zone(&pkg, "intel-rapl:0:1", "uncore", 0, MAX);
    let dram = zone(&pkg, "intel-rapl:0:2", "dram", 0, MAX);
    let psys = zone(dir.path(), "intel-rapl:1", "psys", 0, MAX);
    let mut m = RaplMeter::open(dir.path()).unwrap();
    let kinds: Vec<_> = m
        .domains()
        .iter()
        .map(|d| (d.name.clone(), d.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("package-0".to_string(), DomainKind::CpuPackage),
            ("dram-0".to_string(), DomainKind::Dram),
            ("psys".to_string(), DomainKind::Platform),
        ]
    );
    set(&pkg, 10_000_000);
    set(&core, 6_000_000);
    set(&uncore, 1_000_000);
    set(&dram, 2_000_000);
    set(&psys, 20_000_000);
    assert_eq!(m.read_joules().unwrap(), vec![10.0, 2.0, 20.0]);
    assert!(
        !DomainKind::Platform.counts_in_total(),
        "psys contains the rest"
    );
}

#[test]
fn mmio_zone_duplicating_a_package_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    zone(dir.path(), "intel-rapl:0", "package-0", 0, MAX);
    zone(dir.path(), "intel-rapl-mmio:0", "package-0", 0, MAX);
    let m = RaplMeter::open(dir.path()).unwrap();
    assert_eq!(m.domains().len(), 1);
}

#[test]
fn a_wrap_inside_a_window_is_corrected() {
    let dir = tempfile::tempdir().unwrap();
    let max = 1_000_000_000;
    let pkg = zone(
        dir.path(),
        "intel-rapl:0",
        "package-0",
        max - 3_000_000,
        max,
    );
    let mut m = RaplMeter::open(dir.path()).unwrap();
    set(&pkg, max - 1_000_000);
    assert_eq!(m.read_joules().unwrap(), vec![2.0]);
    set(&pkg, 4_000_000); // wrapped: 1 J to the top, then 4 J
    assert_eq!(m.read_joules().unwrap(), vec![7.0]);
    set(&pkg, 5_000_000);
    assert_eq!(m.read_joules().unwrap(), vec![8.0]);
    assert_eq!(m.dropped_samples(), 0);
}

#[test]
fn two_reads_straddling_a_wrap_near_the_counter_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = zone(dir.path(), "intel-rapl:0", "package-0", MAX - 10, MAX);
    let mut m = RaplMeter::open(dir.path()).unwrap();
    set(&pkg, 15);
    let j = m.read_joules().unwrap()[0];
    assert!((j - 25e-6).abs() < 1e-12, "{j}");
}

#[test]
fn a_counter_going_backwards_without_plausible_wrap_drops_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = zone(
        dir.path(),
        "intel-rapl:0",
        "package-0",
        600_000_000,
        1_000_000_000,
    );
    let mut m = RaplMeter::open(dir.path()).unwrap();
    set(&pkg, 100_000_000); // 500 J back: not a wrap
    let j = m.read_joules().unwrap()[0];
    assert_eq!(j, 0.0, "never negative energy");
    assert_eq!(m.dropped_samples(), 1);
    set(&pkg, 101_000_000); // counting resumes from the new base
    assert_eq!(m.read_joules().unwrap(), vec![1.0]);
}

#[test]
fn garbage_in_energy_uj_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = zone(dir.path(), "intel-rapl:0", "package-0", 0, MAX);
    let mut m = RaplMeter::open(dir.path()).unwrap();
    std::fs::write(pkg.join("energy_uj"), "lots\n").unwrap();
    let err = m.read_joules().unwrap_err();
    assert!(matches!(err, MeterError::Garbage { .. }));
    let text = err.to_string();
    assert!(
        text.contains("energy_uj") && text.contains("lots"),
        "{text}"
    );
}

#[test]
fn missing_tree_says_what_was_found() {
    let dir = tempfile::tempdir().unwrap();
    let err = RaplMeter::open(&dir.path().join("nope"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no powercap tree at"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = RaplMeter::open(empty.path()).err().unwrap().to_string();
    assert!(err.contains("no intel-rapl zones"), "{err}");
}

#[test]
fn unreadable_energy_uj_tells_how_to_grant_access() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pkg = zone(dir.path(), "intel-rapl:0", "package-0", 0, MAX);
    let file = pkg.join("energy_uj");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&file).is_ok() {
        // Root reads a mode-000 file; the mapping of the kernel's EACCES is checked below.
        eprintln!("skipped the file-mode half: running as root, which reads any file");
    } else {
        let err = RaplMeter::open(dir.path()).err().unwrap().to_string();
        assert!(
            err.contains("permission denied") && err.contains("chmod"),
            "{err}"
        );
    }
    let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
    let mapped = read_error(&file, denied).to_string();
    assert!(
        mapped.contains("root only") && mapped.contains("chmod o+r"),
        "{mapped}"
    );
}

/// Guards issue 16, case 7: a forward jump that implies more power than the bound (or over half
/// the range) is a dropped interval, never energy.
#[test]
fn an_implausible_forward_jump_is_dropped_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = zone(dir.path(), "intel-rapl:0", "package-0", 1_000_000, MAX);
    let mut m = RaplMeter::open(dir.path()).unwrap().with_power_bound(170.0);
    std::thread::sleep(std::time::Duration::from_millis(100));
    set(&pkg, 3_000_000); // 2 J in >= 0.1 s: at most 20 W
    assert_eq!(m.read_joules().unwrap(), vec![2.0]);
    std::thread::sleep(std::time::Duration::from_millis(100));
    set(&pkg, 1_003_000_000); // +1000 J in about 0.1 s: thousands of W
    assert_eq!(m.read_joules().unwrap(), vec![2.0], "the jump adds nothing");
    assert_eq!(m.dropped_samples(), 1);
    std::thread::sleep(std::time::Duration::from_millis(100));
    set(&pkg, 1_004_000_000); // back to a plausible 1 J step from the new base
    assert_eq!(m.read_joules().unwrap(), vec![3.0]);
    assert_eq!(m.intervals(), 3);
    // Without a power bound, a step over half the range is still refused.
    let mut unbounded = RaplMeter::open(dir.path()).unwrap();
    set(&pkg, 1_004_000_000 + MAX / 2 + 1);
    assert_eq!(unbounded.read_joules().unwrap(), vec![0.0]);
    assert_eq!(unbounded.dropped_samples(), 1);
}
