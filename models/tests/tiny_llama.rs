//! The language-model family on a tiny random llama GGUF written here: every technique through
//! the catalogue, the key/value cache against a full pass, the tokenizer, and the errors of broken
//! files. Needs no fetched file.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::quantized::{GgmlDType, QTensor};
use slimbench_models::catalog::build_workload;
use slimbench_models::llm::infer::{forward, KvCache, Logits};
use slimbench_models::llm::tiny::{write_tiny_gguf, write_tiny_text, Breakage, TINY};
use slimbench_models::llm::workload::{CALIBRATION_ENV, TEXT_ENV};
use slimbench_models::llm::{gguf, load_gguf};
use slimbench_models::workload::{Cell, WorkloadSpec};
use slimbench_models::ModelError;

/// The tiny model and a held-out text, written once per test binary.
fn fixture() -> &'static (tempfile::TempDir, PathBuf) {
    static FIXTURE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny.gguf");
        write_tiny_gguf(&model, TINY, Breakage::default()).unwrap();
        let text = dir.path().join("text.txt");
        write_tiny_text(&text).unwrap();
        // Set once, before any workload reads it; every test of this binary uses the same text.
        std::env::set_var(TEXT_ENV, &text);
        std::env::set_var(CALIBRATION_ENV, &text);
        (dir, model)
    })
}

fn cell(model: &Path, technique: &str) -> WorkloadSpec {
    WorkloadSpec {
        cell: Cell::new(
            &format!("llama@{}", model.display()),
            technique.parse().unwrap(),
            "cpu",
            1,
        )
        .with_dim(&slimbench_models::dimension::SEQ_LEN, 16)
        .with_dim(&slimbench_models::dimension::GEN_TOKENS, 4),
        cache_dir: fixture().0.path().join("cache"),
        model_inputs: Default::default(),
    }
}

#[test]
fn every_technique_builds_generates_and_is_judged_against_the_reference() {
    let (_, model) = fixture();
    for technique in [
        "fp32",
        "q8_0",
        "q4_0",
        "q4_1",
        "q5_0",
        "q5_1",
        "q4k",
        "q5k",
        "q6k",
        "int8",
        "f16",
        "bf16",
        "q4_1-all",
        "prune-structured-50",
        "prune-structured-50+q8_0",
        "kv-q8_0",
        "q4_1-all+kv-q8_0",
    ] {
        let mut w =
            build_workload(&cell(model, technique)).unwrap_or_else(|e| panic!("{technique}: {e}"));
        let q = w.workload.quality().unwrap();
        let lang = q.language.clone().expect("a language model's quality");
        assert!(
            lang.perplexity.is_finite() && lang.perplexity > 1.0,
            "{technique}"
        );
        assert!(lang.kld_mean >= 0.0 && lang.kld_p99 >= lang.kld_mean * 0.0);
        assert_eq!(q.value_pct, lang.top1_agreement_pct);
        if technique == "fp32" {
            assert!(
                lang.kld_mean < 1e-3,
                "the reference against itself: {lang:?}"
            );
            assert!(lang.top1_agreement_pct > 99.0);
        }
        let g = w.workload.generation().expect("a generative workload");
        assert_eq!((g.prompt_tokens(), g.gen_tokens()), (16, 4));
        assert!(g.kv_cache_bytes() > 0);
        g.prefill().unwrap();
        // More steps than gen_tokens: the cache is cut back to the prompt and never overflows.
        for _ in 0..9 {
            g.decode_step().unwrap();
        }
        w.workload.run_batch().unwrap();
        let f = w.report.footprint;
        assert!(f.model_bytes > 0 && f.parameter_count > 0);
        let layers = w.report.layers.clone();
        assert_eq!(layers[0].name, "token_embd+norms");
        let head = layers.iter().find(|l| l.name == "output").unwrap();
        match technique {
            "q4_0" | "q4_1" | "q5_0" | "q4k" => {
                assert_eq!(head.format, "q8_0", "{technique}: the head keeps 8 bits");
                assert!(head.note.as_deref().unwrap_or("").contains("q8_0"));
            }
            "q4_1-all" => {
                assert_eq!(
                    layers[0].format, "q8_0",
                    "the tied table takes the head's format"
                );
                assert!(layers.iter().any(|l| l.format == "q4_1"));
            }
            _ => {}
        }
        if technique == "prune-structured-50" {
            // Half of the two key/value groups (with their query heads) and of the 256 neurons.
            let qkv = layers.iter().find(|l| l.name == "blk.0.attn_qkv").unwrap();
            assert_eq!((qkv.out_dim, qkv.in_dim), (32 + 2 * 16, 64));
            let down = layers.iter().find(|l| l.name == "blk.0.ffn_down").unwrap();
            assert_eq!(down.in_dim, 128);
        }
        if technique.starts_with("prune-layers-1") {
            assert!(
                layers.iter().all(|l| !l.name.starts_with("blk.1.")),
                "one block left"
            );
        }
        if technique.starts_with("q4k") {
            // 64 fits no 256-block: the fallback is recorded per layer.
            assert!(layers
                .iter()
                .any(|l| l.note.as_deref().unwrap_or("").contains("fell back")));
        }
    }
}

#[test]
fn an_8_bit_key_value_cache_holds_a_quarter_of_the_bytes_and_keeps_the_answers() {
    let (_, model) = fixture();
    let f32_cache = build_workload(&cell(model, "fp32")).unwrap();
    let mut q8_cache = build_workload(&cell(model, "kv-q8_0")).unwrap();
    assert_eq!(q8_cache.report.technique_params["kv_cache"], "q8_0");
    assert_eq!(f32_cache.report.technique_params["kv_cache"], "f32");
    let mut f32_cache = f32_cache;
    let f32_bytes = f32_cache.workload.generation().unwrap().kv_cache_bytes();
    let q8_bytes = q8_cache.workload.generation().unwrap().kv_cache_bytes();
    // Two blocks x (keys + values) x 2 heads x 16 x 20 tokens: 4 bytes a value, or 34 per 32.
    assert_eq!(f32_bytes, 2 * 2 * 32 * 20 * 4);
    assert_eq!(q8_bytes, 2 * 2 * 32 * 20 * 34 / 32);
    let lang = q8_cache.workload.quality().unwrap().language.unwrap();
    assert!(
        lang.kld_mean < 0.01 && lang.top1_agreement_pct > 90.0,
        "8-bit keys and values move the answers little: {lang:?}"
    );
    assert!(
        lang.kld_mean > 0.0,
        "but they are not the f32 cache: {lang:?}"
    );
    // Where a block's key/value width is no multiple of 32 (half of 2 heads of 16), the cache
    // says why it does not apply; so do families without a cache.
    let e = build_workload(&cell(model, "prune-structured-50+kv-q8_0"))
        .err()
        .expect("16-wide keys fit no q8_0 block");
    assert!(e.to_string().contains("multiples of 32"), "{e}");
    let digits = WorkloadSpec {
        cell: Cell::new("digits-mlp", "kv-q8_0".parse().unwrap(), "cpu", 1),
        cache_dir: fixture().0.path().join("cache"),
        model_inputs: Default::default(),
    };
    match build_workload(&digits) {
        Err(ModelError::NotApplicable(why)) => assert!(why.contains("no key/value cache"), "{why}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("kv-q8_0 should not apply to digits"),
    }
}

#[test]
fn distillation_and_unstructured_pruning_say_why_they_do_not_apply() {
    let (_, model) = fixture();
    for technique in ["distill", "prune-unstructured-50"] {
        match build_workload(&cell(model, technique)) {
            Err(ModelError::NotApplicable(why)) => assert!(why.len() > 20, "{why}"),
            Err(e) => panic!("{technique}: {e}"),
            Ok(_) => panic!("{technique} should not apply"),
        }
    }
}

#[test]
fn the_cache_gives_the_same_logits_as_one_full_pass() {
    let (_, model) = fixture();
    let (llama, _, _) = load_gguf(model).unwrap();
    let tokens: Vec<u32> = (0..12).map(|i| (i * 37 % 256) as u32).collect();
    let mut full = KvCache::new(&llama, 16);
    let all = forward(&llama, &tokens, &mut full, Logits::All).unwrap();
    let vocab = llama.config.vocab;
    let mut cache = KvCache::new(&llama, 16);
    forward(&llama, &tokens[..8], &mut cache, Logits::Last).unwrap();
    for (i, t) in tokens.iter().enumerate().skip(8) {
        let step = forward(&llama, &[*t], &mut cache, Logits::Last).unwrap();
        let want = &all[i * vocab..(i + 1) * vocab];
        let diff = step
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff < 1e-3,
            "token {i}: decode step differs from the full pass by {diff}"
        );
    }
    // Cut back and run again: the same numbers.
    cache.truncate(8);
    let again = forward(&llama, &tokens[8..9], &mut cache, Logits::Last).unwrap();
    let want = &all[8 * vocab..9 * vocab];
    assert!(again.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-3));
    let mut small = KvCache::new(&llama, 4);
    let err = forward(&llama, &tokens, &mut small, Logits::Last).unwrap_err();
    assert!(err.to_string().contains("cache"), "{err}");
}

#[test]
fn the_tokenizer_applies_the_merges_and_splits_digits() {
    let (_, model) = fixture();
    let (_, source, _) = load_gguf(model).unwrap();
    let tokens = slimbench_models::llm::tiny::tiny_tokens();
    let id = |t: &str| tokens.iter().position(|x| x == t).unwrap() as u32;
    let ids = source.tokenizer.encode("the then 42").unwrap();
    assert_eq!(
        ids,
        vec![id("the"), id("Ġthe"), id("n"), id("Ġ"), id("4"), id("2")],
        "merges th, the, Ġthe; every digit apart"
    );
    assert_eq!(source.tokenizer.decode(&ids).unwrap(), "the then 42");
}

#[test]
fn q4_1_of_the_dequantized_file_is_the_file() {
    let (_, model) = fixture();
    let file = gguf::read(model).unwrap();
    let mut checked = 0;
    for q in file
        .tensors
        .values()
        .filter(|q| q.dtype() == GgmlDType::Q4_1)
    {
        let f32 = q.dequantize(&candle_core::Device::Cpu).unwrap();
        let again = QTensor::quantize(&f32, GgmlDType::Q4_1).unwrap();
        assert_eq!(again.data().unwrap(), q.data().unwrap());
        checked += 1;
    }
    assert_eq!(checked, 7 * TINY.blocks);
}

#[test]
fn broken_files_name_the_file_and_the_fault() {
    let (dir, model) = fixture();
    let expect = |path: &Path, needle: &str| {
        let err = match load_gguf(path) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{} should not load", path.display()),
        };
        assert!(
            err.contains(&path.display().to_string()),
            "names the file: {err}"
        );
        assert!(err.contains(needle), "says {needle:?}: {err}");
    };
    let bytes = std::fs::read(model).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    expect(&truncated, "blk.");
    let header_only = dir.path().join("header.gguf");
    std::fs::write(&header_only, &bytes[..40]).unwrap();
    expect(&header_only, "not a readable GGUF file");
    let wrong = dir.path().join("gpt2.gguf");
    write_tiny_gguf(
        &wrong,
        TINY,
        Breakage {
            architecture: Some("gpt2"),
            ..Default::default()
        },
    )
    .unwrap();
    expect(&wrong, "architecture \"gpt2\" is not supported");
    let missing = dir.path().join("missing.gguf");
    write_tiny_gguf(
        &missing,
        TINY,
        Breakage {
            missing_tensor: Some("blk.1.ffn_down.weight"),
            ..Default::default()
        },
    )
    .unwrap();
    expect(&missing, "\"blk.1.ffn_down.weight\" is missing");
}

#[test]
fn layer_dropping_removes_the_block_that_changes_the_hidden_state_least() {
    let (_, model) = fixture();
    let (llama, source, _) = load_gguf(model).unwrap();
    let tokens = source
        .tokenizer
        .encode("the then in thin ink 2024")
        .unwrap();
    // Block 0 made an identity: no attention output, no feed-forward output.
    let mut silent = llama.clone();
    let zero = |l: &slimbench_models::layer::DenseLayer| {
        let w = l.weight_f32().unwrap().zeros_like().unwrap();
        slimbench_models::layer::DenseLayer::from_f32(l.name.clone(), &w, l.bias.clone()).unwrap()
    };
    silent.blocks[0].attn_out = zero(&silent.blocks[0].attn_out);
    silent.blocks[0].down = zero(&silent.blocks[0].down);
    let influence = slimbench_models::llm::infer::block_influence(&silent, &tokens).unwrap();
    assert!(
        influence[0].abs() < 1e-6 && influence[1] > 1e-3,
        "{influence:?}"
    );
    let (dropped, which) = slimbench_models::llm::prune::drop_layers(&silent, 1, &tokens).unwrap();
    assert_eq!(which, vec![0]);
    assert_eq!(dropped.blocks.len(), 1);
    let err = slimbench_models::llm::prune::drop_layers(&llama, 2, &tokens).unwrap_err();
    assert!(err.to_string().contains("at most 1"), "{err}");
}

/// The largest difference between two logit vectors, relative to the largest logit.
fn relative_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
        / scale
}

#[test]
fn candles_path_which_gpu_cells_run_gives_the_own_engines_logits() {
    use candle_core::Device;
    use slimbench_models::linears::apply_post_step;
    use slimbench_models::llm::engine::Engine;
    use slimbench_models::llm::prune::prune_structured;
    use slimbench_models::pruning::Norm;
    use slimbench_models::technique::Technique;

    let (_, model) = fixture();
    let (llama, _, _) = load_gguf(model).unwrap();
    let variant = |name: &str| {
        let technique: Technique = name.parse().unwrap();
        apply_post_step(&llama, technique.post().unwrap(), "tiny")
            .unwrap()
            .model
    };
    let pruned = prune_structured(&llama, 0.5, Norm::L2).unwrap();
    // fp32 runs the same products: near rounding. f16 keeps its weights at f16 on both sides,
    // but candle (a GPU cell's path) rounds the activations to f16 too where slimbench's kernels
    // keep them f32: within 0.1%. The block formats quantize activations per row on both sides,
    // through different kernels: within 1%.
    let cases = [
        ("fp32", llama.clone(), 1e-5),
        ("f16", variant("f16"), 1e-3),
        ("q8_0", variant("q8_0"), 1e-2),
        ("q4_1-all", variant("q4_1-all"), 1e-2),
        ("q4k", variant("q4k"), 1e-2),
        ("prune-structured-50", pruned, 1e-5),
    ];
    let tokens: Vec<u32> = (0..12).map(|i| (i * 37 % 256) as u32).collect();
    for (name, m, tolerance) in cases {
        let mut own = Engine::own(&m, 16);
        let mut candle = Engine::candle(&m, &Device::Cpu, 16).unwrap();
        assert_eq!(candle.kernel(), "candle-cpu");
        let check = |step: &str, a: &[f32], b: &[f32]| {
            let d = relative_diff(a, b);
            println!("{name}, {step}: {d:.2e}");
            assert!(
                d < tolerance,
                "{name}, {step}: candle's logits differ by {d} (relative)"
            );
        };
        let a = candle.forward(&tokens[..8], Logits::All).unwrap();
        let b = own.forward(&tokens[..8], Logits::All).unwrap();
        check("prefill", &a, &b);
        for (i, t) in tokens.iter().enumerate().skip(8) {
            let a = candle.forward(&[*t], Logits::Last).unwrap();
            let b = own.forward(&[*t], Logits::Last).unwrap();
            check(&format!("decode {i}"), &a, &b);
        }
        assert_eq!(candle.len(), 12);
        candle.truncate(8);
        own.truncate(8);
        let a = candle.forward(&tokens[8..10], Logits::Last).unwrap();
        let b = own.forward(&tokens[8..10], Logits::Last).unwrap();
        check("after cutting the cache back", &a, &b);
        let err = candle.forward(&tokens, Logits::Last).unwrap_err();
        assert!(err.to_string().contains("cache"), "{name}: {err}");
    }
}
