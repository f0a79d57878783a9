//! A damaged or hand-edited run folder, and extreme values: every case of the hostile probe
//! (issue "No input can hang it or make it lie") is refused naming file, line and field, or
//! rendered within a bounded time; a full disk leaves the earlier files whole.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use predicates::prelude::*;
use slimbench::analysis::RunData;
use slimbench::export::{ExportType, Exporter, ALL_EXPORTS};

use crate::exporters::{record, sample_run};

/// A small real run folder (digits-mlp fp32 and q8_0 at batch 1 and 4), made once for the module.
fn pristine_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap().keep();
        let out = tmp.join("out");
        let mut args = vec![
            "run",
            "--models",
            "digits-mlp",
            "--techniques",
            "fp32,q8_0",
            "--batch-sizes",
            "1,4",
            "--out",
        ];
        let out_s = out.to_string_lossy().to_string();
        args.push(&out_s);
        args.extend(crate::cli::SHORT_TIMING);
        crate::cli::slimbench(&tmp.join("cache"))
            .args(&args)
            .assert()
            .success();
        crate::cli::only_run_dir(&out)
    })
}

/// A copy of the pristine run folder to damage.
fn copy_of_run(into: &Path) -> PathBuf {
    let dest = into.join("run");
    copy_dir(pristine_run(), &dest);
    let _ = std::fs::remove_file(dest.join("run.lock"));
    dest
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Rewrites line `line` (1-based) of `results.jsonl` through `edit`.
fn edit_record(run: &Path, line: usize, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = run.join("results.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut v: serde_json::Value = serde_json::from_str(&lines[line - 1]).unwrap();
    edit(&mut v);
    lines[line - 1] = serde_json::to_string(&v).unwrap();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

fn edit_manifest(run: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = run.join("run.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// Every output file of a folder, by name, with its bytes (results, reports, charts, traces).
fn outputs(run: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![run.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    files.sort();
    files
}

const BOUND: Duration = Duration::from_secs(30);

/// Every command that reads a run folder's records, on `run`: `report`, `compare` with `run` on
/// either side, `merge` into `merged`, and `run --resume`.
fn readers(run: &Path, merged: &Path) -> Vec<Vec<String>> {
    let (run, base) = (
        run.display().to_string(),
        pristine_run().display().to_string(),
    );
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        words(&["report", &run]),
        words(&["compare", &base, &run]),
        words(&["compare", &run, &base]),
        words(&["merge", &run, "--out", &merged.display().to_string()]),
        words(&["run", "--resume", &run]),
    ]
}

#[test]
fn regression_an_absurd_latency_is_refused_at_once_naming_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let run = copy_of_run(tmp.path());
    let before = outputs(&run);
    edit_record(&run, 2, |r| r["latency"]["mean_ms"] = 1e308.into());
    let t = std::time::Instant::now();
    crate::cli::slimbench(tmp.path())
        .arg("report")
        .arg(&run)
        .timeout(BOUND)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("results.jsonl: line 2")
                .and(predicate::str::contains("`latency.mean_ms`"))
                .and(predicate::str::contains("1e308")),
        );
    assert!(t.elapsed() < BOUND, "report took {:?}", t.elapsed());
    // Nothing was rewritten from the impossible record.
    let after: Vec<_> = outputs(&run)
        .into_iter()
        .filter(|(p, _)| !p.ends_with("results.jsonl"))
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|(p, _)| !p.ends_with("results.jsonl"))
        .collect();
    assert_eq!(after, before);
}

#[test]
fn regression_a_negative_latency_is_an_error_for_report_compare_and_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let run = copy_of_run(tmp.path());
    edit_record(&run, 3, |r| {
        r["latency"]["min_ms"] = (-5.0).into();
        r["latency_samples_ms"][0] = (-5.0).into();
    });
    for args in readers(&run, &tmp.path().join("merged")) {
        crate::cli::slimbench(tmp.path())
            .args(&args)
            .timeout(BOUND)
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains("results.jsonl: line 3")
                    .and(predicate::str::contains("latency.min_ms"))
                    .and(predicate::str::contains("-5")),
            );
    }
    assert!(!tmp.path().join("merged").join("results.jsonl").exists());
}

#[test]
fn regression_a_record_of_a_cell_outside_the_plan_is_an_error_for_every_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let run = copy_of_run(tmp.path());
    // The plan changed after the q8_0 cells were measured: drop them from run.json.
    edit_manifest(&run, |m| {
        let cells = m["plan"]["cells"].as_array_mut().unwrap();
        cells.retain(|c| c["technique"] != "q8_0");
    });
    let q8_line = std::fs::read_to_string(run.join("results.jsonl"))
        .unwrap()
        .lines()
        .position(|l| l.contains("\"technique\":\"q8_0\""))
        .unwrap()
        + 1;
    for args in readers(&run, &tmp.path().join("merged")) {
        crate::cli::slimbench(tmp.path())
            .args(&args)
            .timeout(BOUND)
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains(format!("results.jsonl: line {q8_line}"))
                    .and(predicate::str::contains("digits-mlp/q8_0/cpu/b"))
                    .and(predicate::str::contains("not in this folder's plan")),
            );
    }
}

#[test]
fn regression_stored_settings_out_of_range_are_refused_naming_run_json_and_the_key_before_any_preparation(
) {
    let cases: [(&str, &str, serde_json::Value); 6] = [
        ("timing", "min_duration_s", 1e9.into()),
        ("carbon", "pue", (-3.0).into()),
        ("", "threads", 0.into()),
        ("", "cell_timeout_s", (-1.0).into()),
        ("timing", "sample_hz", 1e12.into()),
        ("carbon", "intensity_g_per_kwh", (-5.0).into()),
    ];
    for (group, key, value) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let run = copy_of_run(tmp.path());
        // One cell to measure, so that a resume that took the setting would prepare and run it.
        let text = std::fs::read_to_string(run.join("results.jsonl")).unwrap();
        let kept: Vec<&str> = text.lines().take(3).collect();
        std::fs::write(run.join("results.jsonl"), kept.join("\n") + "\n").unwrap();
        edit_manifest(&run, |m| {
            if group.is_empty() {
                m["spec"][key] = value.clone();
            } else {
                m["spec"][group][key] = value.clone();
            }
        });
        let dotted = if group.is_empty() {
            format!("spec.{key}")
        } else {
            format!("spec.{group}.{key}")
        };
        crate::cli::slimbench(tmp.path())
            .args(["run", "--resume"])
            .arg(&run)
            .timeout(BOUND)
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains("run.json: key")
                    .and(predicate::str::contains(format!("`{dotted}`")))
                    .and(predicate::str::contains("prepared").not()),
            );
    }
}

/// Extreme but finite values (1e-300 to 1e300, every figure alike, a single point) through every
/// exporter and every chart: each finishes within the bound.
#[test]
fn every_exporter_and_chart_finishes_on_extreme_values() {
    let values = [1e-300, 1e-30, 1e-9, 1.0, 1e9, 1e30, 1e300, 1.7e308, 5e-324];
    for (i, &v) in values.iter().enumerate() {
        for &w in &[v, 1.0, values[(i + 3) % values.len()]] {
            let mut data = sample_run();
            data.records = vec![
                record("fp32", 1, 98.0, v, v, 203_304),
                record("q8_0", 1, 98.0, v, v, 55_000),
                record("q4_0", 1, 0.0, w, w, usize::MAX / 2),
                record("q4_0", 4, 100.0, w, v, 1),
            ];
            render_within_bound(data, &format!("values {v:e} and {w:e}"));
        }
    }
    // A single point, and no point at all.
    let mut data = sample_run();
    data.records.truncate(1);
    render_within_bound(data.clone(), "a single point");
    data.records.clear();
    render_within_bound(data, "no point");
}

fn render_within_bound(data: RunData, what: &str) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        for t in ALL_EXPORTS {
            let bytes = match t {
                ExportType::Csv => slimbench::export::csv::CsvExporter.export(&data),
                ExportType::Json => slimbench::export::json::JsonExporter.export(&data),
                ExportType::Markdown => slimbench::export::markdown::MarkdownExporter.export(&data),
                ExportType::Html => slimbench::export::html::HtmlExporter.export(&data),
                ExportType::Emissions => {
                    slimbench::export::emissions::EmissionsExporter.export(&data)
                }
            };
            out.push(bytes.map(|b| b.len()).map_err(|e| format!("{e:#}")));
        }
        for (stem, _, chart) in slimbench::export::html::charts(&data) {
            out.push(
                slimbench::chart::Layout::ALL
                    .iter()
                    .map(|l| chart.svg(*l).map(|s| s.len()))
                    .sum::<anyhow::Result<usize>>()
                    .map_err(|e| format!("{stem}: {e:#}")),
            );
        }
        let _ = tx.send(out);
    });
    match rx.recv_timeout(BOUND) {
        Ok(results) => {
            for r in results {
                assert!(r.is_ok(), "rendering {what}: {r:?}");
            }
        }
        Err(_) => panic!("rendering {what} did not finish within {BOUND:?}"),
    }
}

/// A small tmpfs mounted for one test, unmounted when dropped; `None` (with the reason printed)
/// where this user cannot mount one.
struct SmallDisk {
    root: PathBuf,
    _tmp: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("disk");
        std::fs::create_dir_all(&root).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&root)
            .stderr(std::process::Stdio::piped())
            .output();
        match status {
            Ok(o) if o.status.success() => Some(Self { root, _tmp: tmp }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a small tmpfs to fill ({}); run the tests as root to check the full-disk case",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount ({e}); the full-disk case is not checked");
                None
            }
        }
    }

    /// Writes a filler file until the disk refuses more.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.root.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.root)
            .status();
    }
}

#[test]
fn regression_a_full_disk_keeps_the_earlier_outputs_whole_exits_3_and_prints_the_resume_line() {
    let Some(disk) = SmallDisk::mount("16m") else {
        return;
    };
    let run = copy_of_run(&disk.root);
    // One cell left to measure, for the resume below.
    let jsonl = run.join("results.jsonl");
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let kept: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(&jsonl, &kept).unwrap();
    crate::cli::slimbench(disk.root.as_path())
        .arg("report")
        .arg(&run)
        .timeout(BOUND)
        .assert()
        .success();
    let before = outputs(&run);
    let filler = disk.fill();

    // The report cannot be written: every earlier file stays whole, no temporary file is left.
    crate::cli::slimbench(disk.root.as_path())
        .arg("report")
        .arg(&run)
        .timeout(BOUND)
        .assert()
        .code(3)
        .stderr(
            predicate::str::contains("disk is full")
                .and(predicate::str::contains("earlier file is kept")),
        );
    assert_eq!(outputs(&run), before, "a failed report changed a file");

    // A resume cannot record its cell: exit 3, the resume line, no complete record lost.
    let cache = tempfile::tempdir().unwrap();
    crate::cli::slimbench(cache.path())
        .args(["run", "--resume"])
        .arg(&run)
        .timeout(Duration::from_secs(300))
        .assert()
        .code(3)
        .stderr(
            predicate::str::contains("disk is full").and(predicate::str::contains(format!(
                "resume with: slimbench run --resume {}",
                run.display()
            ))),
        );
    let now = std::fs::read_to_string(&jsonl).unwrap();
    assert!(now.starts_with(&kept), "earlier records changed");

    // Space freed: the resume finishes the run.
    std::fs::remove_file(filler).unwrap();
    crate::cli::slimbench(cache.path())
        .args(["run", "--retry-failed", "--resume"])
        .arg(&run)
        .timeout(Duration::from_secs(300))
        .assert()
        .success();
    let records = slimbench::run_dir::RunDir::new(&run).records().unwrap();
    assert_eq!(records.len(), 4);
    assert!(records
        .iter()
        .all(|r| r.status == slimbench::results::Status::Ok));
    let leftovers: Vec<_> = outputs(&run)
        .into_iter()
        .filter(|(p, _)| p.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Every path to a number in `v`, as JSON pointers.
fn number_paths(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Number(_) => out.push(at),
        serde_json::Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                number_paths(x, format!("{at}/{i}"), out);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, x) in map {
                number_paths(x, format!("{at}/{k}"), out);
            }
        }
        _ => {}
    }
}

/// What a fuzzed number becomes: any finite double (its bits), a signed extreme, a non-number.
fn fuzzed_value(choice: u8, bits: u64) -> serde_json::Value {
    let x = f64::from_bits(bits);
    match choice % 6 {
        0 if x.is_finite() => x.into(),
        1 => (-(bits as f64)).into(),
        2 => 1e308.into(),
        3 => serde_json::Value::Null,
        4 => "12".into(),
        _ => (bits as i64).into(),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// results.jsonl with one number anywhere replaced: either every record read passes the
    /// record check, or the error names the file and a line. Never a panic or a hang.
    #[test]
    fn fuzzed_results_are_accepted_valid_or_rejected_with_file_and_line(
        pick in proptest::prelude::any::<usize>(),
        choice in proptest::prelude::any::<u8>(),
        bits in proptest::prelude::any::<u64>(),
        garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        garbage_at in proptest::prelude::any::<usize>(),
    ) {
        let data = sample_run();
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for (i, r) in data.records.iter().enumerate() {
            let mut v = serde_json::to_value(r).unwrap();
            if i == pick % data.records.len() {
                let mut paths = Vec::new();
                number_paths(&v, String::new(), &mut paths);
                let path = &paths[pick % paths.len()];
                *v.pointer_mut(path).unwrap() = fuzzed_value(choice, bits);
            }
            lines.push(serde_json::to_vec(&v).unwrap());
        }
        if !garbage.is_empty() && choice % 7 == 0 {
            let at = garbage_at % (lines.len() + 1);
            lines.insert(at, garbage);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        let mut bytes = lines.join(&b'\n');
        bytes.push(b'\n');
        std::fs::write(&path, bytes).unwrap();
        let cells: Vec<_> = data.manifest.plan.cells.clone();
        match slimbench::results::read_records(&path, Some(&cells)) {
            Ok(records) => {
                for r in &records {
                    proptest::prop_assert!(slimbench::results::validity::check_record(r).is_ok());
                    proptest::prop_assert!(cells.contains(&r.key));
                }
            }
            Err(e) => proptest::prop_assert!(e.0.contains("results.jsonl: line "), "{}", e.0),
        }
    }

    /// run.json with one number anywhere replaced: either it reads and passes the range checks,
    /// or the error names run.json. Never a panic.
    #[test]
    fn fuzzed_run_json_is_accepted_in_range_or_rejected_naming_the_file(
        pick in proptest::prelude::any::<usize>(),
        choice in proptest::prelude::any::<u8>(),
        bits in proptest::prelude::any::<u64>(),
    ) {
        let data = sample_run();
        let mut v = serde_json::to_value(&data.manifest).unwrap();
        let mut paths = Vec::new();
        number_paths(&v, String::new(), &mut paths);
        let path = &paths[pick % paths.len()];
        *v.pointer_mut(path).unwrap() = fuzzed_value(choice, bits);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("run.json"), serde_json::to_vec(&v).unwrap()).unwrap();
        match slimbench::runner::manifest::Manifest::read(dir.path()) {
            Ok(m) => proptest::prop_assert!(m.check(&dir.path().join("run.json")).is_ok()),
            Err(e) => proptest::prop_assert!(e.0.contains("run.json"), "{}", e.0),
        }
    }
}

/// A round is the unit of resumption: a run stopped after some rounds of a cell runs only the
/// missing ones on `--resume`, and the cell's record then holds every round.
#[test]
fn a_resume_runs_only_the_missing_rounds() {
    let tmp = tempfile::tempdir().unwrap();
    let run = copy_of_run(tmp.path());
    let jsonl = run.join("results.jsonl");
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let last: serde_json::Value = serde_json::from_str(lines.pop().unwrap()).unwrap();
    let rounds = last["rounds"].as_array().unwrap().len();
    assert!(rounds >= 2, "the pristine run has rounds");
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    // Drop that cell's last round from rounds.jsonl: one round is missing.
    let rounds_path = run.join("rounds.jsonl");
    let entries = std::fs::read_to_string(&rounds_path).unwrap();
    let mut kept: Vec<&str> = Vec::new();
    let mut dropped = 0;
    for l in entries.lines() {
        let e: serde_json::Value = serde_json::from_str(l).unwrap();
        let same = e["record"]["technique"] == last["technique"]
            && e["record"]["batch_size"] == last["batch_size"];
        if same && e["round"] == rounds {
            dropped += 1;
            continue;
        }
        kept.push(l);
    }
    assert_eq!(dropped, 1);
    std::fs::write(&rounds_path, kept.join("\n") + "\n").unwrap();
    let cache = tempfile::tempdir().unwrap();
    crate::cli::slimbench(cache.path())
        .args(["run", "--resume"])
        .arg(&run)
        .timeout(Duration::from_secs(300))
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "[1/1] round {rounds}/{rounds}"
        )));
    let records = slimbench::run_dir::RunDir::new(&run).records().unwrap();
    assert_eq!(records.len(), 4);
    let resumed = records
        .iter()
        .find(|r| r.rounds.len() == rounds && r.key.technique.to_string() == last["technique"])
        .unwrap();
    assert_eq!(resumed.rounds.len(), rounds);
}
