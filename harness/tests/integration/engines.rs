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

/// A small CNN written as an ONNX file by the test (the digits CNN's export, random weights),
/// and a `Gemm` classifier head written node by node.
fn user_models(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use slimbench_models::digits::net::Network;
    use slimbench_models::onnx::graph::{Attr, Dim, GraphBuilder};
    use slimbench_models::onnx::linear::OnnxFormat;
    use slimbench_models::onnx::proto::tensor_proto::DataType;
    let cnn = Network::init(&slimbench_models::digits::cnn::spec(), 3).unwrap();
    let (bytes, _) = slimbench_models::digits::onnx::graph(&cnn, OnnxFormat::F32).unwrap();
    let cnn_path = dir.join("cnn.onnx");
    std::fs::write(&cnn_path, bytes).unwrap();
    let mut g = GraphBuilder::new("gemm-head");
    let x = g.input(
        "features",
        DataType::Float,
        &[Dim::Named("n"), Dim::Named("width")],
    );
    let (out, inputs) = (6, 40);
    let w: Vec<f32> = (0..out * inputs)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0)
        .collect();
    let w = g.initializer_f32("head.weight", &[out, inputs], &w);
    let b = g.initializer_f32("head.bias", &[out], &[0.1; 6]);
    let y = g.node("Gemm", &[&x, &w, &b], vec![("transB", Attr::Int(1))]);
    g.output(
        &y,
        "scores",
        DataType::Float,
        &[Dim::Named("n"), Dim::Fixed(out)],
    );
    let gemm_path = dir.join("gemm.onnx");
    std::fs::write(&gemm_path, g.finish()).unwrap();
    (cnn_path, gemm_path)
}

#[test]
fn a_users_onnx_models_run_each_technique_on_ort_and_list_the_nodes_it_changed() {
    let Some(library) = ort_library("the user-model run") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (cnn, gemm) = user_models(tmp.path());
    let labels = tmp.path().join("labels.txt");
    std::fs::write(&labels, "1\n7\n3\n0\n").unwrap();
    let out = tmp.path().join("reports");
    slimbench(&tmp.path().join("cache"))
        .env("ORT_DYLIB_PATH", &library)
        .arg("run")
        .arg("--models")
        .arg(format!("onnx@{}", cnn.display()))
        .args([
            "--engines",
            "ort",
            "--techniques",
            "fp32,int8,q4_0,q4_1,prune-oneshot-50,distill",
            "--batch-sizes",
            "4",
            "--rounds",
            "1",
            "--labels",
        ])
        .arg(&labels)
        .arg("--out")
        .arg(&out)
        .args(SHORT_TIMING)
        .assert()
        .success();
    let run = only_run_dir(&out);
    let csv = ResultsCsv::read(&run);
    let row = |technique: &str| {
        csv.rows
            .iter()
            .find(|r| csv.get(r, "technique") == technique)
            .unwrap()
    };
    let fp32 = row("fp32");
    assert_eq!(csv.get(fp32, "status"), "ok");
    assert_eq!(csv.get(fp32, "quality_metric"), "accuracy");
    assert_eq!(
        csv.get(fp32, "fidelity_cosine").parse::<f64>().unwrap(),
        1.0
    );
    for technique in ["int8", "q4_0", "q4_1", "prune-oneshot-50"] {
        let r = row(technique);
        assert_eq!(
            csv.get(r, "status"),
            "ok",
            "{technique}: {}",
            csv.get(r, "error")
        );
        let params: serde_json::Value =
            serde_json::from_str(&csv.get(r, "technique_params")).unwrap();
        let changed = params["changed_nodes"].as_array().unwrap();
        assert_eq!(
            changed.len(),
            1,
            "{technique}: the one fully connected layer"
        );
        // Both convolutions are left f32, and said so.
        let left = params["left_nodes"].as_array().unwrap();
        assert_eq!(left.len(), 2, "{technique}: {left:?}");
        assert!(left.iter().all(|l| l.as_str().unwrap().starts_with("Conv")));
        let cosine: f64 = csv.get(r, "fidelity_cosine").parse().unwrap();
        assert!(
            cosine > 0.9 && cosine <= 1.0 + 1e-9,
            "{technique}: {cosine}"
        );
    }
    let distill = row("distill");
    assert_eq!(csv.get(distill, "status"), "not-applicable");
    assert!(csv.get(distill, "error").contains("no training data"));
    // A Gemm head with generated inputs: its named width comes from --dims.
    let out2 = tmp.path().join("reports2");
    slimbench(&tmp.path().join("cache"))
        .env("ORT_DYLIB_PATH", &library)
        .arg("run")
        .arg("--models")
        .arg(format!("onnx@{}", gemm.display()))
        .args([
            "--engines",
            "ort",
            "--techniques",
            "fp32,q4_0",
            "--batch-sizes",
            "3",
            "--rounds",
            "1",
            "--dims",
            "width=40",
            "--out",
        ])
        .arg(&out2)
        .args(SHORT_TIMING)
        .assert()
        .success();
    let csv = ResultsCsv::read(&only_run_dir(&out2));
    for r in &csv.rows {
        assert_eq!(csv.get(r, "status"), "ok", "{}", csv.get(r, "error"));
        assert_eq!(csv.get(r, "quality_metric"), "output_cosine");
    }
}

#[test]
fn a_users_onnx_model_needs_the_ort_engine_a_readable_file_and_its_dims() {
    let tmp = tempfile::tempdir().unwrap();
    slimbench(&tmp.path().join("cache"))
        .args([
            "plan",
            "--models",
            "onnx@/nonexistent/model.onnx",
            "--engines",
            "slimbench",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/model.onnx"));
    let (cnn, _) = user_models(tmp.path());
    slimbench(&tmp.path().join("cache"))
        .arg("plan")
        .arg("--models")
        .arg(format!("onnx@{}", cnn.display()))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("add --engines ort"));
}
