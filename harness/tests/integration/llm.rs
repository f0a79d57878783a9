//! Language models through the CLI: a tiny random llama GGUF given as `llama@FILE` (no fetched
//! file needed), the prompt-length and generated-token plan dimensions, the phases' records and
//! columns, and the report's section.

use predicates::prelude::*;
use slimbench_models::llm::tiny::{write_tiny_gguf, Breakage, TINY};

use crate::cli::{only_run_dir, slimbench, ResultsCsv, SHORT_TIMING};

#[test]
fn a_llama_file_runs_with_prefill_and_decode_apart_and_its_quality() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny.gguf");
    write_tiny_gguf(&model, TINY, Breakage::default()).unwrap();
    let text = tmp.path().join("text.txt");
    let words = ["the", "then", "in", "thin", "2024", "ink", "the end."];
    let body: Vec<&str> = (0..900)
        .map(|i| words[(i * 5 + i / 4) % words.len()])
        .collect();
    std::fs::write(&text, body.join(" ")).unwrap();
    let out = tmp.path().join("reports");
    slimbench(&tmp.path().join("cache"))
        .env("SLIMBENCH_LLM_TEXT", &text)
        .env("SLIMBENCH_LLM_CALIBRATION", &text)
        .args(["run", "--models"])
        .arg(format!("llama@{}", model.display()))
        .args(SHORT_TIMING)
        .args([
            "--techniques",
            "fp32,q8_0,q4_1-all,prune-layers-1,distill",
            "--prompt-lens",
            "16",
            "--gen-tokens",
            "4,8",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("1x16+4"))
        .stdout(predicate::str::contains("1x16+8"));
    let run = only_run_dir(&out);
    let table = ResultsCsv::read(&run);
    let rows = &table.rows;
    let col = |row: &csv::StringRecord, name: &str| table.get(row, name);
    assert_eq!(rows.len(), 10, "5 techniques x 2 generated-token counts");
    for row in rows {
        let technique = col(row, "technique");
        if technique == "distill" {
            assert_eq!(col(row, "status"), "not-applicable");
            continue;
        }
        assert_eq!(
            col(row, "status"),
            "ok",
            "{technique}: {}",
            col(row, "error")
        );
        assert_eq!(col(row, "seq_len_tokens"), "16");
        for name in [
            "prefill_tokens_per_s",
            "decode_tokens_per_s",
            "ttft_p50_ms",
            "prefill_per_token_j",
            "decode_per_token_j",
            "kv_cache_bytes",
            "co2e_per_1000_generated_tokens_g",
            "perplexity",
            "kld_mean_nats",
            "top1_agreement_pct",
        ] {
            let v: f64 = col(row, name)
                .parse()
                .unwrap_or_else(|_| panic!("{technique}: {name}"));
            assert!(v.is_finite() && v >= 0.0, "{technique}: {name} = {v}");
        }
        assert_eq!(
            col(row, "generation_energy_source"),
            col(row, "energy_source")
        );
        // The record's items are generated tokens: its throughput is the decode rate.
        let decode: f64 = col(row, "decode_tokens_per_s").parse().unwrap();
        let items: f64 = col(row, "throughput_items_per_s").parse().unwrap();
        assert!(
            (decode - items).abs() <= 1e-6 * decode,
            "{decode} vs {items}"
        );
        let prefill_j: f64 = col(row, "prefill_per_token_j").parse().unwrap();
        let decode_j: f64 = col(row, "decode_per_token_j").parse().unwrap();
        assert!(prefill_j > 0.0 && decode_j > 0.0);
        if technique == "fp32" {
            assert_eq!(
                col(row, "top1_agreement_pct").parse::<f64>().unwrap(),
                100.0
            );
        }
    }
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("Language models: prefill, decode and quality"));
    let charts: Vec<String> = run
        .join("charts")
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    for prefix in [
        "bars-decode-rate",
        "bars-prefill-rate",
        "bars-prefill-energy",
        "pareto-kld-energy",
    ] {
        assert!(
            charts.iter().any(|c| c.starts_with(prefix)),
            "no {prefix} chart in {charts:?}"
        );
    }
}
