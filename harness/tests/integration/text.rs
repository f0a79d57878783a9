//! Text models through the CLI: a tiny random BERT given with `--model-dir`, a synthetic email
//! corpus standing in for SpamAssassin (no fetched files needed), sequence length as a plan
//! dimension, and the text columns of the records.

use std::io::Write;
use std::path::Path;

use predicates::prelude::*;
use rand::{Rng, SeedableRng};
use slimbench_models::text::emails::RawEmail;
use slimbench_models::text::tiny::write_tiny_checkpoint;

use crate::cli::{only_run_dir, slimbench, ResultsCsv, SHORT_TIMING};

/// 800 emails of spam words or work words, enough for the 256/512 split plus distillation text.
fn write_synthetic_corpus(models_dir: &Path) {
    let spam = [
        "win", "free", "money", "prize", "click", "now", "cash", "cheap", "deal", "offer",
    ];
    let ham = [
        "meeting", "report", "code", "review", "lunch", "team", "project", "update", "build",
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let dir = models_dir.join("spam-assassin");
    std::fs::create_dir_all(&dir).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..800 {
        let is_spam = i % 3 == 0;
        let words = if is_spam { &spam[..] } else { &ham[..] };
        let body: Vec<&str> = (0..12)
            .map(|_| words[rng.gen_range(0..words.len())])
            .collect();
        let email = RawEmail {
            group: if is_spam { "spam-1" } else { "easy-ham-1" }.into(),
            id: format!("{i:05}"),
            text: format!("From: x@y\nSubject: {}\n\n{} .", body[0], body.join(" ")),
        };
        writeln!(gz, "{}", serde_json::to_string(&email).unwrap()).unwrap();
    }
    std::fs::write(dir.join("emails.jsonl.gz"), gz.finish().unwrap()).unwrap();
}

#[test]
fn model_dir_runs_a_bert_at_each_sequence_length_with_fidelity_and_spam_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    write_synthetic_corpus(&models);
    let ckpt = tmp.path().join("tiny-bert");
    write_tiny_checkpoint(&ckpt, 11).unwrap();
    let out = tmp.path().join("reports");
    let cache = tmp.path().join("cache");
    // A calibrated CPU: each record then says what fraction of the peak it reached.
    slimbench(&cache)
        .args(["calibrate", "--cache-dir"])
        .arg(&cache)
        .assert()
        .success()
        .stdout(predicate::str::contains("GFLOP/s"));
    slimbench(&cache)
        .env("SLIMBENCH_MODELS", &models)
        .args(["run", "--model-dir"])
        .arg(&ckpt)
        .args(SHORT_TIMING)
        .args([
            "--techniques",
            "fp32,q8_0,q4k,q8_0-all,prune-structured-50,distill+q8_0,prune-unstructured-50,int8",
            "--batch-sizes",
            "2",
            "--seq-lens",
            "16,32",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("fidelity"))
        .stdout(predicate::str::contains("2x16"));
    let run = only_run_dir(&out);
    let table = ResultsCsv::read(&run);
    let rows = &table.rows;
    let col = |row: &csv::StringRecord, name: &str| table.get(row, name);
    assert_eq!(rows.len(), 16, "8 techniques x 2 sequence lengths");
    let mut fp32_flops = std::collections::HashMap::new();
    for row in rows {
        assert!(
            col(row, "model").starts_with("bert@"),
            "{}",
            col(row, "model")
        );
        let seq = col(row, "seq_len_tokens");
        assert!(seq == "16" || seq == "32", "{seq}");
        let technique = col(row, "technique");
        if technique == "prune-unstructured-50" {
            assert_eq!(col(row, "status"), "not-applicable");
            assert!(col(row, "error").contains("use prune-structured"));
            continue;
        }
        assert_eq!(
            col(row, "status"),
            "ok",
            "{technique}: {}",
            col(row, "error")
        );
        assert_eq!(col(row, "quality_metric"), "spam_accuracy");
        let fidelity: f64 = col(row, "fidelity_cosine").parse().unwrap();
        match technique.as_str() {
            "fp32" => assert!((fidelity - 1.0).abs() < 1e-6),
            "q8_0" | "int8" => assert!(fidelity > 0.99, "{technique} fidelity {fidelity}"),
            _ => assert!(
                fidelity > 0.0 && fidelity <= 1.0 + 1e-6,
                "{technique} {fidelity}"
            ),
        }
        let number = |name: &str| -> f64 {
            col(row, name)
                .parse()
                .unwrap_or_else(|_| panic!("{technique}: {name} = {:?}", col(row, name)))
        };
        assert_eq!(col(row, "threads"), "1", "--threads reaches the worker");
        let flops = number("flops_per_item");
        assert!(flops > 0.0, "{technique}: {flops}");
        if technique == "fp32" {
            fp32_flops.insert(seq.clone(), flops);
        }
        assert!(number("achieved_gflop_per_s") > 0.0);
        // Variants on the integer kernels (int8, the block formats) are held to the integer peak
        // of the instructions they run (AVX-512 VNNI, AVX-VNNI or AVX2; none on the portable
        // path).
        let kind = col(row, "peak_kind");
        let integer_peak = slimbench_models::kernels::Isa::get()
            .int8_path()
            .unwrap_or_default();
        let last_step = technique.rsplit('+').next().unwrap_or_default();
        let integer = ["int8", "q8_0", "q4k", "q8_0-all"].contains(&last_step);
        if integer {
            assert_eq!(kind, integer_peak, "{technique}");
        } else {
            assert_eq!(kind, "f32-fma", "{technique}");
        }
        assert!(number("weight_read_gb_per_s") > 0.0, "{technique}");
        assert!(number("bandwidth_fraction") > 0.0, "{technique}");
        if !kind.is_empty() {
            let fraction = number("peak_fraction");
            assert!(fraction > 0.0 && fraction < 1.0, "{technique}: {fraction}");
        }
        if technique == "int8" {
            assert!(col(row, "layer_formats").contains("=int8"));
        }
        if technique == "q8_0-all" {
            assert!(col(row, "layer_formats").contains("embeddings+layer_norms=f32+q8_0"));
        }
        if technique == "q4k" {
            let formats = col(row, "layer_formats");
            assert!(
                formats.contains("=q4k") && formats.contains("=q4_1"),
                "{formats}"
            );
        }
    }
    // Linears grow with the tokens, attention with their square: 16 -> 32 tokens is 2x to 4x.
    let ratio = fp32_flops["32"] / fp32_flops["16"];
    assert!(
        (2.0..=4.0).contains(&ratio),
        "fp32 FLOPs 32 vs 16 tokens: {ratio}"
    );
}

#[test]
fn seq_lens_without_a_text_model_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    slimbench(tmp.path())
        .args(["plan", "--models", "digits-mlp", "--seq-lens", "32"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("no model of this plan has a sequence length dimension")
                .and(predicate::str::contains("add --models minilm")),
        );
}

#[test]
fn fetch_from_the_hub_without_the_feature_says_how_to_build_it() {
    let tmp = tempfile::tempdir().unwrap();
    slimbench(tmp.path())
        .args(["fetch", "minilm", "--from", "hub", "--models-dir"])
        .arg(tmp.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--features hub"));
}

/// Guards issue 16, case 11: a broken bring-your-own checkpoint and a `--cache-dir` that is a file
/// are usage errors (exit 2) before any run folder exists.
#[test]
fn a_broken_checkpoint_or_a_file_as_cache_dir_is_a_usage_error_before_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("my-bert");
    slimbench_models::text::tiny::write_tiny_checkpoint(&model, 3).unwrap();
    let weights = model.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 3]).unwrap();
    let out = tmp.path().join("out");
    slimbench(&tmp.path().join("cache"))
        .args(["run", "--techniques", "fp32", "--model-dir"])
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--model-dir"))
        .stderr(predicate::str::contains("model.safetensors"))
        .stderr(predicate::str::contains("truncated"))
        .stderr(predicate::str::contains("fetch minilm").not());
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    slimbench(&tmp.path().join("cache"))
        .args([
            "run",
            "--models",
            "digits-mlp",
            "--techniques",
            "fp32",
            "--cache-dir",
        ])
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--cache-dir"))
        .stderr(predicate::str::contains("not a folder"));
    assert!(!out.exists(), "no run folder for a usage error");
}
