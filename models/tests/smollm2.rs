//! SmolLM2-135M-Instruct against llama.cpp: the tokenizer's ids (a fixture made with
//! llama-tokenize), the shipped Q4_1 weights re-encoded from the f32 reference, and the reference's
//! perplexity and greedy text. Needs `slimbench fetch smollm2` in the models cache
//! ($SLIMBENCH_MODELS); without it each test prints why it is skipped, unless
//! SLIMBENCH_REQUIRE_SMOLLM2=1 (CI sets it) makes its absence a failure.

use std::path::PathBuf;

use candle_core::quantized::{GgmlDType, QTensor};
use slimbench_models::fetch::models_dir;
use slimbench_models::llm::fetch::{smollm2_path, sotu_paths};
use slimbench_models::llm::gguf;
use slimbench_models::llm::infer::{forward, KvCache, Logits};
use slimbench_models::llm::load_gguf;
use slimbench_models::llm::quality::{chunks, language_quality, reference_log_probs};

/// The GGUF file, or `None` (with the reason printed) when it is absent and not required.
fn smollm2() -> Option<PathBuf> {
    let path = smollm2_path(&models_dir());
    let text = sotu_paths(&models_dir()).0;
    let missing = [&path, &text].into_iter().find(|p| !p.is_file());
    if let Some(p) = missing {
        if std::env::var("SLIMBENCH_REQUIRE_SMOLLM2").is_ok_and(|v| v == "1") {
            panic!("SLIMBENCH_REQUIRE_SMOLLM2=1 but {} is absent", p.display());
        }
        eprintln!(
            "skipped: {} is absent; run `slimbench fetch smollm2`",
            p.display()
        );
        return None;
    }
    Some(path)
}

#[test]
fn token_ids_equal_llama_cpp() {
    let Some(path) = smollm2() else { return };
    let (_, source, _) = load_gguf(&path).unwrap();
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2/tokens.json");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    for case in cases["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = source.tokenizer.encode(text).unwrap();
        assert_eq!(got, want, "token ids of {:?}", &text[..text.len().min(60)]);
    }
}

#[test]
fn q4_1_re_encoded_from_the_reference_reproduces_the_shipped_weights() {
    let Some(path) = smollm2() else { return };
    let file = gguf::read(&path).unwrap();
    let mut checked = 0;
    for (name, shipped) in &file.tensors {
        if shipped.dtype() != GgmlDType::Q4_1 {
            continue;
        }
        let reference = shipped.dequantize(&candle_core::Device::Cpu).unwrap();
        let again = QTensor::quantize(&reference, GgmlDType::Q4_1).unwrap();
        assert_eq!(
            again.data().unwrap(),
            shipped.data().unwrap(),
            "{name}: Q4_1 of the f32 reference differs from the shipped blocks"
        );
        checked += 1;
    }
    assert_eq!(checked, 210, "every matrix but the embeddings is Q4_1");
}

#[test]
fn the_reference_predicts_the_held_out_text_and_generates_english() {
    let Some(path) = smollm2() else { return };
    let (model, source, key) = load_gguf(&path).unwrap();
    let text = std::fs::read_to_string(sotu_paths(&models_dir()).0).unwrap();
    let tokens = source.tokenizer.encode(&text).unwrap();
    let held = chunks(&tokens, 512, 1, source.bos);
    let cache = tempfile::tempdir().unwrap();
    let reference = reference_log_probs(&model, &held, cache.path(), &key).unwrap();
    let q = language_quality(&model, &held, &reference, "f32").unwrap();
    eprintln!("reference on one chunk of 512: {q:?}");
    assert!(
        q.kld_mean < 1e-3,
        "the reference against itself (f16 log-probs)"
    );
    assert!(q.top1_agreement_pct > 99.0);
    // llama-perplexity gives the F32 file 24.96 over 16 chunks of these addresses.
    assert!(
        (10.0..45.0).contains(&q.perplexity),
        "perplexity {}",
        q.perplexity
    );

    let prompt = source.tokenizer.encode("The capital of France is").unwrap();
    let mut cache = KvCache::new(&model, 64);
    let mut logits = forward(&model, &prompt, &mut cache, Logits::Last).unwrap();
    let mut generated = Vec::new();
    for _ in 0..6 {
        let next = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0 as u32;
        generated.push(next);
        logits = forward(&model, &[next], &mut cache, Logits::Last).unwrap();
    }
    let text = source.tokenizer.decode(&generated).unwrap();
    eprintln!("greedy: The capital of France is{text}");
    assert!(text.contains("Paris"), "greedy continuation {text:?}");
}
