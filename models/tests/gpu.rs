//! The CUDA path (feature `cuda`): digits, a tiny BERT and a tiny llama on `cuda:0` against the CPU, the
//! not-applicable CSR path, and MiniLM where it is fetched. Without the feature, or without a GPU,
//! each test prints why it is skipped.

use slimbench_models::catalog::build_workload;
use slimbench_models::workload::{Cell, WorkloadSpec};

/// `Some(reason)` when CUDA cannot run here.
fn no_gpu() -> Option<String> {
    if !slimbench_models::device::CUDA_BUILT {
        return Some("built without the cuda feature (cargo test --features cuda)".into());
    }
    match slimbench_models::device::candle_device("cuda:0") {
        Ok(_) => None,
        Err(e) => Some(format!("no usable GPU: {e}")),
    }
}

fn skip(test: &str) -> bool {
    if let Some(why) = no_gpu() {
        eprintln!("skipped {test}: {why}");
        return true;
    }
    false
}

fn spec(model: &str, technique: &str, device: &str, cache: &std::path::Path) -> WorkloadSpec {
    let cell = Cell::new(model, technique.parse().expect("a technique"), device, 8);
    WorkloadSpec {
        cell: if model.starts_with("bert@") || model == "minilm" {
            cell.with_dim(&slimbench_models::dimension::SEQ_LEN, 64)
        } else {
            cell
        },
        cache_dir: cache.to_path_buf(),
        model_inputs: Default::default(),
    }
}

#[test]
fn digits_variants_run_on_cuda_with_the_cpu_quality() {
    if skip("digits_variants_run_on_cuda_with_the_cpu_quality") {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    for technique in ["fp32", "f16", "bf16", "q8_0", "q4_0"] {
        let cpu = build_workload(&spec("digits-mlp", technique, "cpu", cache.path())).unwrap();
        let mut gpu =
            build_workload(&spec("digits-mlp", technique, "cuda:0", cache.path())).unwrap();
        gpu.workload.run_batch().unwrap();
        let (c, g) = (
            cpu.workload.quality().unwrap(),
            gpu.workload.quality().unwrap(),
        );
        println!(
            "{technique}: cpu {:.2}% cuda {:.2}%",
            c.value_pct, g.value_pct
        );
        assert!(
            (c.value_pct - g.value_pct).abs() <= 1.0,
            "{technique}: {c:?} vs {g:?}"
        );
    }
    let e = build_workload(&spec(
        "digits-mlp",
        "prune-unstructured-90",
        "cuda:0",
        cache.path(),
    ))
    .err()
    .expect("the CSR path has no CUDA kernel");
    assert!(e.to_string().contains("no CUDA kernel"), "{e}");
}

#[test]
fn tiny_bert_on_cuda_matches_the_cpu() {
    use slimbench_models::text::bert::{row_cosines, Bert};
    use slimbench_models::text::files::ModelFiles;
    use slimbench_models::text::tokenize::{Padding, TextTokenizer};
    if skip("tiny_bert_on_cuda_matches_the_cpu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    slimbench_models::text::tiny::write_tiny_checkpoint(dir.path(), 5).unwrap();
    let files = ModelFiles::locate(dir.path(), "test").unwrap();
    let bert =
        Bert::from_tensors(&files.config().unwrap(), &files.tensors().unwrap(), "tiny").unwrap();
    let mut tok = TextTokenizer::load(&files.tokenizer).unwrap();
    let input = tok
        .encode(
            &["win free money now", "team meeting tomorrow"],
            Padding::Fixed(16),
        )
        .unwrap();
    let cuda = slimbench_models::device::candle_device("cuda:0").unwrap();
    let on_gpu = bert.to_device(&cuda).unwrap();
    let g = on_gpu
        .embed(&input.to_device(&cuda).unwrap(), false)
        .unwrap();
    let c = bert.embed(&input, false).unwrap();
    let cos = row_cosines(&g.to_device(&candle_core::Device::Cpu).unwrap(), &c).unwrap();
    assert!(cos.iter().all(|&x| x > 0.9999), "{cos:?}");
}

#[test]
fn minilm_q8_0_on_cuda_keeps_fidelity() {
    if skip("minilm_q8_0_on_cuda_keeps_fidelity") {
        return;
    }
    if slimbench_models::text::workload::model_files("minilm").is_err() {
        eprintln!("skipped minilm_q8_0_on_cuda_keeps_fidelity: MiniLM not fetched (slimbench fetch minilm)");
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let mut w = build_workload(&spec("minilm", "q8_0", "cuda:0", cache.path())).unwrap();
    w.workload.run_batch().unwrap();
    let q = w.workload.quality().unwrap();
    println!(
        "minilm q8_0 on cuda:0: fidelity {:?}, spam {:.2}%",
        q.fidelity, q.value_pct
    );
    assert!(q.fidelity.unwrap() >= 0.99);
}

#[test]
fn a_tiny_llama_generates_on_cuda_with_the_cpus_quality() {
    use slimbench_models::llm::tiny::{write_tiny_gguf, write_tiny_text, Breakage, TINY};
    use slimbench_models::llm::workload::{CALIBRATION_ENV, TEXT_ENV};
    if skip("a_tiny_llama_generates_on_cuda_with_the_cpus_quality") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    write_tiny_gguf(&model, TINY, Breakage::default()).unwrap();
    let text = dir.path().join("text.txt");
    write_tiny_text(&text).unwrap();
    std::env::set_var(TEXT_ENV, &text);
    std::env::set_var(CALIBRATION_ENV, &text);
    let spec = |technique: &str, device: &str| WorkloadSpec {
        cell: Cell::new(
            &format!("llama@{}", model.display()),
            technique.parse().unwrap(),
            device,
            1,
        )
        .with_dim(&slimbench_models::dimension::SEQ_LEN, 16)
        .with_dim(&slimbench_models::dimension::GEN_TOKENS, 4),
        cache_dir: dir.path().join("cache"),
        model_inputs: Default::default(),
    };
    for technique in [
        "fp32",
        "f16",
        "q8_0",
        "q4_1-all",
        "q4k",
        "prune-structured-50",
    ] {
        let cpu = build_workload(&spec(technique, "cpu")).unwrap();
        let mut gpu = build_workload(&spec(technique, "cuda:0")).unwrap();
        gpu.workload.run_batch().unwrap();
        assert_eq!(gpu.report.technique_params["kernel"], "candle-cuda");
        let (c, g) = (
            cpu.workload.quality().unwrap(),
            gpu.workload.quality().unwrap(),
        );
        let (c, g) = (c.language.unwrap(), g.language.unwrap());
        println!(
            "{technique}: perplexity cpu {:.4} cuda {:.4}, KLD cpu {:.5} cuda {:.5}",
            c.perplexity, g.perplexity, c.kld_mean, g.kld_mean
        );
        assert!(
            (c.perplexity - g.perplexity).abs() <= 0.01 * c.perplexity,
            "{technique}: {c:?} vs {g:?}"
        );
    }
    let e = build_workload(&spec("int8", "cuda:0"))
        .err()
        .expect("slimbench's int8 has no CUDA kernel");
    assert!(e.to_string().contains("int8"), "{e}");
}
