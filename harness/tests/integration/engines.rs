//! `--engines slimbench,ort`: the same cells on slimbench's own engine and on ONNX Runtime, named
//! in the CSV and the cell names, side by side in the report; a technique ONNX Runtime has no
//! operator for is `not-applicable` with its reason; without the library, `--engines ort` is a
//! usage error that names the fetch. The runs on ONNX Runtime need its library (`slimbench fetch
//! onnxruntime` or `ORT_DYLIB_PATH`): without it they say why they skip, unless
//! SLIMBENCH_REQUIRE_ORT=1 (CI sets it) makes its absence a failure.

use predicates::prelude::*;

use crate::cli::{only_run_dir, slimbench, ResultsCsv, SHORT_TIMING};

/// The library to hand the worker processes, or why there is none.
fn ort_library(test: &str) -> Option<std::path::PathBuf> {
    match slimbench_models::onnx::runtime::library_path() {
        Ok(path) => Some(path),
        Err(why) => {
            if std::env::var("SLIMBENCH_REQUIRE_ORT").is_ok_and(|v| v == "1") {
                panic!("SLIMBENCH_REQUIRE_ORT=1 but ONNX Runtime is absent: {why}");
            }
            eprintln!("skipping {test}: {why}");
            None
        }
    }
}

#[test]
fn each_cell_runs_on_both_engines_named_in_the_csv_and_side_by_side_in_the_report() {
    let Some(library) = ort_library("the two-engine run") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("reports");
    slimbench(&tmp.path().join("cache"))
        .env("ORT_DYLIB_PATH", &library)
        .args([
            "run",
            "--models",
            "digits-mlp",
            "--engines",
            "slimbench,ort",
            "--techniques",
            "fp32,int8,q4_0,bf16",
            "--batch-sizes",
            "4",
            "--rounds",
            "1",
            "--out",
        ])
        .arg(&out)
        .args(SHORT_TIMING)
        .assert()
        .success();
    let run = only_run_dir(&out);
    let csv = ResultsCsv::read(&run);
    assert_eq!(csv.rows.len(), 8, "4 techniques x 2 engines");
    let cell = |engine: &str, technique: &str| {
        csv.rows
            .iter()
            .find(|r| csv.get(r, "engine") == engine && csv.get(r, "technique") == technique)
            .unwrap_or_else(|| panic!("no {technique} row on {engine}"))
    };
    for technique in ["fp32", "int8", "q4_0"] {
        for engine in ["slimbench", "ort"] {
            let row = cell(engine, technique);
            assert_eq!(csv.get(row, "status"), "ok", "{technique} on {engine}");
            let accuracy: f64 = csv.get(row, "quality_pct").parse().unwrap();
            assert!(accuracy > 90.0, "{technique} on {engine}: {accuracy}");
        }
        let params: serde_json::Value =
            serde_json::from_str(&csv.get(cell("ort", technique), "technique_params")).unwrap();
        assert_eq!(params["engine"]["name"], "ort");
        assert_eq!(params["engine"]["onnxruntime"], "1.31.0");
        assert_eq!(params["engine"]["execution"], "sequential");
    }
    // The same fp32 network on both engines classifies the held-out images alike.
    assert_eq!(
        csv.get(cell("ort", "fp32"), "quality_pct"),
        csv.get(cell("slimbench", "fp32"), "quality_pct")
    );
    let formats = csv.get(cell("ort", "q4_0"), "layer_formats");
    assert!(formats.contains("=q4-nbits"), "{formats}");
    let bf16 = cell("ort", "bf16");
    assert_eq!(csv.get(bf16, "status"), "not-applicable");
    assert!(csv.get(bf16, "error").contains("no operator for bf16"));
    assert_eq!(csv.get(cell("slimbench", "bf16"), "status"), "ok");
    // Traces name the engine; the own engine's keep their names.
    assert!(run.join("traces/digits-mlp_int8_cpu_b4_ort.csv").exists());
    assert!(run.join("traces/digits-mlp_int8_cpu_b4.csv").exists());
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("## Engines side by side"));
    assert!(
        report.contains("| digits-mlp | int8 | cpu | 4 |"),
        "{report}"
    );
}

#[test]
fn the_ort_engine_without_its_library_is_a_usage_error_naming_the_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    slimbench(&tmp.path().join("cache"))
        .env("SLIMBENCH_MODELS", tmp.path().join("models"))
        .env_remove("ORT_DYLIB_PATH")
        .args(["run", "--models", "digits-mlp", "--engines", "ort"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("slimbench fetch onnxruntime"));
    slimbench(&tmp.path().join("cache"))
        .args([
            "plan",
            "--models",
            "digits-mlp",
            "--engines",
            "slimbench,tensorrt",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown engine \"tensorrt\""))
        .stderr(predicate::str::contains("slimbench, ort"));
}
