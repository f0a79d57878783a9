//! `slimbench compare` end to end: run folders, criterion baselines, and unusable input.

use std::path::{Path, PathBuf};

use predicates::prelude::*;

use crate::cli::{only_run_dir, slimbench};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("harness/tests/fixtures")
}

/// Rewrites every record of `dir/results.jsonl` with `edit` (records as JSON values).
fn edit_records(dir: &Path, edit: impl Fn(&mut Vec<serde_json::Value>)) {
    let path = dir.join("results.jsonl");
    let mut records: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    edit(&mut records);
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn copy_run(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["results.jsonl", "run.json"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

#[test]
fn compare_gates_quality_and_reports_missing_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    slimbench(&tmp.path().join("cache"))
        .args([
            "run",
            "--models",
            "digits-mlp",
            "--techniques",
            "fp32,q8_0",
            "--batch-sizes",
            "1",
            "--min-iters",
            "1",
            "--min-duration",
            "0",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    let base = only_run_dir(&out);

    let same = tmp.path().join("same");
    copy_run(&base, &same);
    slimbench(tmp.path())
        .args(["compare", "--metrics", "quality,size"])
        .arg(&base)
        .arg(&same)
        .assert()
        .success()
        .stdout(predicate::str::contains("**OK**"));

    let worse = tmp.path().join("worse");
    copy_run(&base, &worse);
    edit_records(&worse, |records| {
        // Records are appended as cells complete: find them by technique.
        let at = |records: &Vec<serde_json::Value>, t: &str| {
            records.iter().position(|r| r["technique"] == t).unwrap()
        };
        let q8 = at(records, "q8_0");
        let q = records[q8]["quality"]["value_pct"].as_f64().unwrap();
        records[q8]["quality"]["value_pct"] = serde_json::json!(q - 1.0);
        // A consistent edit: the change against the baseline moves with the value.
        let d = records[q8]["quality"]["delta_points"].as_f64().unwrap();
        records[q8]["quality"]["delta_points"] = serde_json::json!(d - 1.0);
        let fp32 = at(records, "fp32");
        records.remove(fp32);
    });
    slimbench(tmp.path())
        .args(["compare", "--metrics", "quality,size"])
        .arg(&base)
        .arg(&worse)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("**REGRESSION**"))
        .stdout(predicate::str::contains(
            "| digits-mlp/q8_0/cpu/b1 | quality |",
        ))
        .stdout(predicate::str::contains("-1.00 points"))
        .stdout(predicate::str::contains(
            "Only in the baseline (missing now):\n- digits-mlp/fp32/cpu/b1",
        ));

    let loose = slimbench(tmp.path())
        .args([
            "compare",
            "--metrics",
            "quality",
            "--threshold",
            "quality=2",
            "--allow-missing",
        ])
        .arg(&base)
        .arg(&worse)
        .assert();
    loose.success();
    // Without --allow-missing, the cell missing now is a regression even under a loose threshold.
    slimbench(tmp.path())
        .args([
            "compare",
            "--metrics",
            "quality",
            "--threshold",
            "quality=2",
        ])
        .arg(&base)
        .arg(&worse)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "- digits-mlp/fp32/cpu/b1: missing from the current set",
        ));

    // A cell measured in the baseline that crashed now fails the gate.
    let crashed = tmp.path().join("crashed");
    copy_run(&base, &crashed);
    edit_records(&crashed, |records| {
        // Records are appended as cells complete: find the fp32 one.
        let fp32 = records
            .iter()
            .position(|r| r["technique"] == "fp32")
            .unwrap();
        records[fp32]["status"] = serde_json::json!("failed");
        records[fp32]["error"] = serde_json::json!("worker killed by signal 9 (SIGKILL)\nmore");
    });
    slimbench(tmp.path())
        .args(["compare", "--metrics", "quality,size", "--allow-missing"])
        .arg(&base)
        .arg(&crashed)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("**REGRESSION**"))
        .stdout(predicate::str::contains(
            "- digits-mlp/fp32/cpu/b1: failed: worker killed by signal 9 (SIGKILL)",
        ));

    let future = tmp.path().join("future");
    copy_run(&base, &future);
    edit_records(&future, |records| {
        for r in records.iter_mut() {
            r["schema_version"] = serde_json::json!(999);
        }
    });
    slimbench(tmp.path())
        .arg("compare")
        .arg(&base)
        .arg(&future)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("schema version 999"));
}

#[test]
fn criterion_estimates_from_a_real_cargo_bench_run_are_read() {
    let crit = fixtures().join("criterion");
    slimbench(Path::new("/nonexistent-cache"))
        .arg("compare")
        .arg(format!("{}@base", crit.display()))
        .arg(format!("{}@new", crit.display()))
        .args(["--metrics", "latency"])
        .assert()
        .success()
        // estimates.json: median.point_estimate 93263.58 ns
        .stdout(predicate::str::contains(
            "| sampler_overhead/off | latency | 0.0933 ms | 0.0933 ms | +0.00 %",
        ))
        .stdout(predicate::str::contains(
            "| sampler_overhead/10hz | latency | 0.0941 ms",
        ));
}

#[test]
fn unusable_input_exits_2_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    slimbench(tmp.path())
        .arg("compare")
        .arg(tmp.path().join("missing"))
        .arg(tmp.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no results.jsonl there"));
    let crit = fixtures().join("criterion");
    slimbench(tmp.path())
        .arg("compare")
        .arg(format!("{}@base", crit.display()))
        .arg(format!("{}@nope", crit.display()))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no benchmark has a baseline named \"nope\"",
        ));
}
