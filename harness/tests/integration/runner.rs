//! The runner's isolation, durability, configuration and sharding, end to end.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use predicates::prelude::*;
use slimbench::results::{read_records, Status};
use slimbench::runner::manifest::Manifest;
use slimbench_models::workload::Cell;

use crate::cli::{only_run_dir, slimbench};

const SIX_CELLS: [&str; 2] = ["--techniques", "fp32,q8_0,q4_0"];

fn keys(run_dir: &Path) -> Vec<Cell> {
    read_records(&run_dir.join("results.jsonl"), None)
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect()
}

/// A short run of the MLP; with [`SIX_CELLS`] three techniques at batch 1 and 32.
fn short_run_args() -> Vec<&'static str> {
    vec![
        "run",
        "--models",
        "digits-mlp",
        "--min-iters",
        "1",
        "--min-duration",
        "0",
        "--warmup",
        "0",
    ]
}

#[test]
fn panic_abort_signal_and_timeout_are_failed_records_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    slimbench(&tmp.path().join("cache"))
        .args(short_run_args())
        .args(SIX_CELLS)
        .args(["--cell-timeout", "4", "--out"])
        .arg(&out)
        .env(
            "SLIMBENCH_TEST_FAULT",
            "panic:fp32_cpu_b1,abort:fp32_cpu_b32,kill:q8_0_cpu_b1,hang:q8_0_cpu_b32",
        )
        .assert()
        .code(1);
    let run = only_run_dir(&out);
    let records = read_records(&run.join("results.jsonl"), None).unwrap();
    assert_eq!(records.len(), 6);
    let by = |t: &str, b: usize| {
        records
            .iter()
            .find(|r| r.key.technique.to_string() == t && r.key.batch_size == b)
            .unwrap()
    };
    let expect = [
        ("fp32", 1, "panicked"),
        ("fp32", 32, "SIGABRT"),
        ("q8_0", 1, "SIGKILL"),
        ("q8_0", 32, "timed out after 4 s"),
    ];
    for (t, b, cause) in expect {
        let r = by(t, b);
        assert_eq!(r.status, Status::Failed, "{t}/b{b}");
        let err = r.error.as_deref().unwrap();
        assert!(err.contains(cause), "{t}/b{b}: {err}");
    }
    for b in [1, 32] {
        assert_eq!(by("q4_0", b).status, Status::Ok);
    }

    // Issue 16, case 11: --resume --retry-failed runs the four failed cells again (no fault
    // now); each new record supersedes the failed one, which stays in the file.
    slimbench(&tmp.path().join("cache"))
        .args(["run", "--retry-failed", "--resume"])
        .arg(&run)
        .assert()
        .success()
        .stderr(predicate::str::contains("2 already recorded, 4 to run"));
    let records = read_records(&run.join("results.jsonl"), None).unwrap();
    assert_eq!(records.len(), 6);
    assert!(records.iter().all(|r| r.status == Status::Ok));
    let lines = std::fs::read_to_string(run.join("results.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines, 10, "the failed records are kept");
}

#[test]
fn a_parent_killed_with_sigkill_resumes_to_exactly_the_full_cell_set() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let cache = tmp.path().join("cache");
    let bin = assert_cmd::cargo::cargo_bin("slimbench");
    let mut child = std::process::Command::new(&bin)
        .args(short_run_args())
        .args(SIX_CELLS)
        .arg("--out")
        .arg(&out)
        .env("SLIMBENCH_CACHE", &cache)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let run_dir: PathBuf = loop {
        assert!(Instant::now() < deadline, "no cell finished in time");
        let found = std::fs::read_dir(&out)
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path());
        if let Some(dir) = found {
            let lines = std::fs::read_to_string(dir.join("results.jsonl"))
                .map(|t| t.lines().count())
                .unwrap_or(0);
            if lines >= 2 {
                break dir;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = keys(&run_dir).len();
    assert!(
        (2..6).contains(&before),
        "killed mid-run: {before} cells recorded"
    );

    slimbench(&cache)
        .arg("run")
        .arg("--resume")
        .arg(&run_dir)
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "{before} already recorded"
        )));
    let after = keys(&run_dir);
    let unique: HashSet<_> = after.iter().cloned().collect();
    assert_eq!(after.len(), 6, "no duplicates: {after:?}");
    let plan = Manifest::read(&run_dir).unwrap().plan.cells;
    assert_eq!(unique, plan.into_iter().collect::<HashSet<_>>());
}

#[test]
fn a_config_with_a_misspelt_key_fails_naming_the_key_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bench.toml");
    std::fs::write(&config, "models = [\"digits-mlp\"]\nbatch_size = [1]\n").unwrap();
    slimbench(tmp.path())
        .args(["run", "--config"])
        .arg(&config)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bench.toml: line 2"))
        .stderr(predicate::str::contains("unknown field `batch_size`"));
}

#[test]
fn the_example_config_runs_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bench.toml");
    slimbench(&tmp.path().join("cache"))
        .args(["run", "--config"])
        .arg(&example)
        .args(["--batch-sizes", "8", "--out"])
        .arg(&out)
        .assert()
        .success();
    let run = only_run_dir(&out);
    // Records are appended as cells complete (the rounds interleave them): compare as a set.
    let mut got: Vec<(String, usize)> = keys(&run)
        .into_iter()
        .map(|k| (k.technique.to_string(), k.batch_size))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("fp32".to_string(), 8),
            ("int8".to_string(), 8),
            ("q8_0".to_string(), 8)
        ]
    );
    let spec = Manifest::read(&run).unwrap().spec;
    assert_eq!(spec.timing.min_iters, 30, "taken from the file");
}

#[test]
fn shards_one_to_three_merged_equal_the_full_plan_and_mismatched_plans_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let mut dirs = Vec::new();
    for i in 1..=3 {
        let out = tmp.path().join(format!("shard{i}"));
        slimbench(&cache)
            .args(short_run_args())
            .args(SIX_CELLS)
            .args(["--shard", &format!("{i}/3"), "--out"])
            .arg(&out)
            .assert()
            .success();
        let dir = only_run_dir(&out);
        assert_eq!(keys(&dir).len(), 2, "6 cells / 3 shares");
        dirs.push(dir);
    }
    let merged = tmp.path().join("merged");
    slimbench(&cache)
        .arg("merge")
        .args(&dirs)
        .arg("--out")
        .arg(&merged)
        .assert()
        .success()
        .stdout(predicate::str::contains("6 of 6 cells"));
    let plan = Manifest::read(&merged).unwrap().plan.cells;
    assert_eq!(keys(&merged), plan, "every cell once, in plan order");
    assert!(merged.join("results.csv").exists());

    let other = tmp.path().join("other");
    slimbench(&cache)
        .args(short_run_args())
        .args(["--techniques", "fp32", "--batch-sizes", "1", "--out"])
        .arg(&other)
        .assert()
        .success();
    slimbench(&cache)
        .arg("merge")
        .arg(&dirs[0])
        .arg(only_run_dir(&other))
        .arg("--out")
        .arg(tmp.path().join("bad"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("mismatched plans"));

    // Issue 16, case 9: a share measured with other settings is refused, naming them.
    let odd = tmp.path().join("odd");
    slimbench(&cache)
        .args(short_run_args())
        .args(SIX_CELLS)
        .args([
            "--shard",
            "1/3",
            "--region",
            "POL",
            "--threads",
            "1",
            "--out",
        ])
        .arg(&odd)
        .assert()
        .success();
    slimbench(&cache)
        .arg("merge")
        .arg(only_run_dir(&odd))
        .args(&dirs[1..])
        .arg("--out")
        .arg(tmp.path().join("mixed"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("mismatched settings"))
        .stderr(predicate::str::contains("threads"))
        .stderr(predicate::str::contains("grid intensity"));
    // Told to, merge joins them, and each cell keeps its own settings in its record and report.
    let mixed = tmp.path().join("mixed-ok");
    slimbench(&cache)
        .arg("merge")
        .arg(only_run_dir(&odd))
        .args(&dirs[1..])
        .arg("--out")
        .arg(&mixed)
        .arg("--allow-mixed-settings")
        .assert()
        .success()
        .stderr(predicate::str::contains("each cell keeps its own settings"));
    let records = read_records(&mixed.join("results.jsonl"), None).unwrap();
    let intensities: HashSet<String> = records
        .iter()
        .filter_map(|r| r.carbon.as_ref())
        .map(|c| c.intensity_g_per_kwh.to_string())
        .collect();
    assert_eq!(
        intensities.len(),
        2,
        "POL's and the world average: {intensities:?}"
    );
    let md = std::fs::read_to_string(mixed.join("report.md")).unwrap();
    assert!(md.contains("MIXED, each cell its own"), "{md}");
}

#[test]
fn plan_prints_each_cells_share() {
    let tmp = tempfile::tempdir().unwrap();
    slimbench(tmp.path())
        .args(["plan", "--models", "digits-mlp", "--shards", "4"])
        .args(SIX_CELLS)
        .assert()
        .success()
        .stdout(predicate::str::contains("6 cells in 4 share(s)"))
        .stdout(predicate::str::contains("share 2/4: 2 cells"))
        .stdout(predicate::str::contains("share 4/4: 1 cells"));
}

#[test]
fn json_flag_prints_one_record_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let assert = slimbench(&tmp.path().join("cache"))
        .args(short_run_args())
        .args(["--techniques", "fp32", "--json", "--out"])
        .arg(&out)
        .assert()
        .success();
    let stdout = String::from_utf8(assert.get_output().stdout.clone()).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2);
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["status"], "ok");
    }
}

/// Guards issue 16, case 1: a crash or a full disk mid-write leaves a torn last line; `--resume`
/// moves it aside to `results.jsonl.torn` and appends the rerun cell on a line of its own.
#[test]
fn resume_after_a_torn_last_line_keeps_every_record_and_the_torn_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("out");
    slimbench(&cache)
        .args(short_run_args())
        .args(["--techniques", "fp32,q8_0", "--batch-sizes", "1", "--out"])
        .arg(&out)
        .assert()
        .success();
    let run_dir = only_run_dir(&out);
    let results = run_dir.join("results.jsonl");
    let text = std::fs::read_to_string(&results).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    // Cut the last record in half, as a full disk would.
    let torn = &lines[1][..lines[1].len() / 2];
    std::fs::write(&results, format!("{}\n{torn}", lines[0])).unwrap();
    slimbench(&cache)
        .arg("report")
        .arg(&run_dir)
        .assert()
        .success()
        .stderr(predicate::str::contains("line 2 is incomplete"));
    slimbench(&cache)
        .arg("run")
        .arg("--resume")
        .arg(&run_dir)
        .assert()
        .success()
        .stderr(predicate::str::contains("results.jsonl.torn"));
    let after = keys(&run_dir);
    assert_eq!(after.len(), 2, "both cells recorded once: {after:?}");
    assert_eq!(
        std::fs::read_to_string(run_dir.join("results.jsonl.torn")).unwrap(),
        format!("{torn}\n"),
        "the torn bytes are kept"
    );
    // Every reader agrees on the repaired folder.
    slimbench(&cache)
        .arg("report")
        .arg(&run_dir)
        .assert()
        .success();
    slimbench(&cache)
        .arg("run")
        .arg("--resume")
        .arg(&run_dir)
        .assert()
        .success()
        .stderr(predicate::str::contains("2 already recorded, 0 to run"));
}

/// Guards issue 16, cases 2 and 3: infinite and out-of-range numbers are usage errors (exit 2,
/// naming the flag or config key) before any run folder exists; none panics.
#[test]
fn infinite_or_huge_numbers_are_refused_before_a_run_folder_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("out");
    for (flag, value) in [
        ("--pue", "inf"),
        ("--carbon-intensity", "inf"),
        ("--sample-hz", "inf"),
        ("--sample-hz", "1e9"),
        ("--min-duration", "inf"),
        ("--cell-timeout", "inf"),
        ("--cell-timeout", "1e300"),
        ("--batch-sizes", "100000000"),
    ] {
        slimbench(&cache)
            .args(["run", "--models", "digits-mlp", "--techniques", "fp32"])
            .args([flag, value, "--out"])
            .arg(&out)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(flag));
    }
    let config = tmp.path().join("bad.toml");
    std::fs::write(&config, "cell_timeout_s = inf\n").unwrap();
    slimbench(&cache)
        .args(["run", "--config"])
        .arg(&config)
        .args(["--out"])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cell_timeout_s"));
    assert!(!out.exists(), "no run folder for a usage error");
}

/// Guards issue 16, case 3: a reader that closes the pipe early ends the output, not the run, and
/// nothing panics.
#[test]
fn a_closed_stdout_pipe_neither_panics_nor_cuts_the_run_short() {
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("out");
    let bin = assert_cmd::cargo::cargo_bin("slimbench");
    for args in [
        vec!["list".to_string()],
        vec!["plan".to_string()],
        short_run_args()
            .into_iter()
            .map(String::from)
            .chain(
                ["--techniques", "fp32,q8_0", "--json", "--out"]
                    .into_iter()
                    .map(String::from),
            )
            .chain([out.display().to_string()])
            .collect(),
    ] {
        let mut child = Command::new(&bin)
            .args(&args)
            .env("SLIMBENCH_CACHE", &cache)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before the first line
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert_ne!(output.status.code(), Some(101), "{args:?}: {stderr}");
    }
    let run_dir = only_run_dir(&out);
    assert_eq!(keys(&run_dir).len(), 4, "every cell ran and was recorded");
}

/// The pids of live `__worker` processes whose command line mentions `marker`.
#[cfg(target_os = "linux")]
fn workers_mentioning(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            cmdline.contains("__worker") && cmdline.contains(marker) && !state.contains(") Z ")
        })
        .collect()
}

/// Guards issue 16, case 6: a worker dies with its parent (PR_SET_PDEATHSIG); SIGTERM stops a run
/// after the current cell like Ctrl-C, with the resume command.
#[cfg(target_os = "linux")]
#[test]
fn workers_die_with_a_killed_parent_and_sigterm_stops_like_ctrl_c() {
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let marker = tmp.path().display().to_string();
    let bin = assert_cmd::cargo::cargo_bin("slimbench");
    let start = |min_duration: &str, out: &str| {
        Command::new(&bin)
            .args([
                "run",
                "--models",
                "digits-mlp",
                "--techniques",
                "fp32,q8_0",
                "--batch-sizes",
                "1",
                "--warmup",
                "0",
                "--min-iters",
                "1",
                "--min-duration",
                min_duration,
                // One round a cell: the worker running at SIGTERM completes its cell.
                "--rounds",
                "1",
                "--out",
            ])
            .arg(tmp.path().join(out))
            .env("SLIMBENCH_CACHE", &cache)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let wait_for_worker = || {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let found = workers_mentioning(&marker);
            if !found.is_empty() {
                return found;
            }
            assert!(std::time::Instant::now() < deadline, "no worker started");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    let mut parent = start("3000", "killed");
    let workers = wait_for_worker();
    // Issue 16, case 4: a second writer of the same folder is refused, naming the holder.
    let run_dir = only_run_dir(&tmp.path().join("killed"));
    slimbench(&cache)
        .arg("run")
        .arg("--resume")
        .arg(&run_dir)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "being written by another slimbench",
        ))
        .stderr(predicate::str::contains(format!("pid {}", parent.id())));
    parent.kill().unwrap(); // SIGKILL
    parent.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !workers_mentioning(&marker).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "workers {workers:?} outlived their killed parent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let parent = start("2", "terminated");
    wait_for_worker();
    // SAFETY: sending SIGTERM to the child this test started.
    unsafe {
        libc::kill(parent.id() as libc::pid_t, libc::SIGTERM);
    }
    let output = parent.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("resume with: slimbench run --resume"),
        "{stderr}"
    );
    let run_dir = only_run_dir(&tmp.path().join("terminated"));
    assert_eq!(
        keys(&run_dir).len(),
        1,
        "the current cell finished and was recorded"
    );
}
