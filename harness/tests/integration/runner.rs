//! The runner's isolation, durability, configuration and sharding, end to end.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use predicates::prelude::*;
use slimbench::results::{read_records, CellKey, Status};
use slimbench::runner::manifest::Manifest;

use crate::cli::{only_run_dir, slimbench};

const SIX_CELLS: [&str; 2] = ["--techniques", "fp32,q8_0,q4_0"];

fn keys(run_dir: &Path) -> Vec<CellKey> {
    read_records(&run_dir.join("results.jsonl"))
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
    let records = read_records(&run.join("results.jsonl")).unwrap();
    assert_eq!(records.len(), 6);
    let by = |t: &str, b: usize| {
        records
            .iter()
            .find(|r| r.key.technique == t && r.key.batch_size == b)
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
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bench.toml");
    slimbench(&tmp.path().join("cache"))
        .args(["run", "--config"])
        .arg(&example)
        .args(["--batch-sizes", "8", "--out"])
        .arg(&out)
        .assert()
        .success();
    let run = only_run_dir(&out);
    let got: Vec<(String, usize)> = keys(&run)
        .into_iter()
        .map(|k| (k.technique, k.batch_size))
        .collect();
    assert_eq!(got, [("fp32".to_string(), 8), ("q8_0".to_string(), 8)]);
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
