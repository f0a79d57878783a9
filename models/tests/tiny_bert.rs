//! Every technique on a tiny random-weight BERT (2 layers, hidden 64), in seconds, and the errors
//! a broken checkpoint gives. Needs no fetched files.

use slimbench_models::kernels::blocks::BlockFormat;
use slimbench_models::linears::{cast, quantize, Linears};
use slimbench_models::pruning::Norm;
use slimbench_models::technique::{HalfType, PostStep, Technique};
use slimbench_models::text::bert::{row_cosines, Bert};
use slimbench_models::text::compress::{
    distill_bert, prune_bert_structured, quantize_embeddings, DistillConfig,
};
use slimbench_models::text::files::ModelFiles;
use slimbench_models::text::tiny::write_tiny_checkpoint;
use slimbench_models::text::tokenize::{Padding, TextTokenizer};

const TEXTS: &[&str] = &[
    "win free money now !",
    "please see the attached report .",
    "cheap cash offer , click now",
    "team lunch tomorrow ? thanks",
    "code review of the build",
    "the small model is fast",
];

fn tiny() -> (tempfile::TempDir, Bert, TextTokenizer) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(dir.path(), 7).unwrap();
    let files = ModelFiles::locate(dir.path(), "test").unwrap();
    let bert =
        Bert::from_tensors(&files.config().unwrap(), &files.tensors().unwrap(), "tiny").unwrap();
    let tok = TextTokenizer::load(&files.tokenizer).unwrap();
    (dir, bert, tok)
}

fn fidelity(a: &Bert, b: &Bert, tok: &mut TextTokenizer) -> f32 {
    let input = tok.encode(TEXTS, Padding::Longest(32)).unwrap();
    let c = row_cosines(
        &a.embed(&input, false).unwrap(),
        &b.embed(&input, false).unwrap(),
    )
    .unwrap();
    c.iter().sum::<f32>() / c.len() as f32
}

#[test]
fn padding_is_invisible_and_embeddings_are_unit_length() {
    let (_d, bert, mut tok) = tiny();
    let batch = bert
        .embed(&tok.encode(TEXTS, Padding::Fixed(24)).unwrap(), false)
        .unwrap();
    let alone = bert
        .embed(
            &tok.encode(&TEXTS[..1], Padding::Longest(24)).unwrap(),
            false,
        )
        .unwrap();
    let rows = batch.to_vec2::<f32>().unwrap();
    let one = alone.to_vec2::<f32>().unwrap();
    for (x, y) in rows[0].iter().zip(&one[0]) {
        assert!(
            (x - y).abs() < 1e-5,
            "padding changed the embedding: {x} vs {y}"
        );
    }
    for r in &rows {
        let n: f32 = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5);
    }
    assert_eq!(batch.dims(), &[TEXTS.len(), 64]);
}

#[test]
fn quantization_and_casts_cover_every_linear_with_fallback() {
    let (_d, bert, mut tok) = tiny();
    let (q8, reports) = quantize(&bert, BlockFormat::Q8_0).unwrap().into_parts();
    assert!(fidelity(&bert, &q8, &mut tok) > 0.99);
    assert_eq!(
        reports.iter().filter(|r| r.format == "q8_0").count(),
        8,
        "4 Linear x 2 layers"
    );
    let (q4k, reports) = quantize(&bert, BlockFormat::Q4K).unwrap().into_parts();
    let down = reports
        .iter()
        .find(|r| r.name.ends_with("output.dense") && r.in_dim == 256)
        .unwrap();
    assert_eq!(down.format, "q4k", "256-wide input takes the k-quant");
    let qkv = reports
        .iter()
        .find(|r| r.name.ends_with("attention.qkv"))
        .unwrap();
    assert_eq!(qkv.format, "q4_1");
    assert!(qkv.note.as_deref().unwrap().contains("fell back to q4_1"));
    assert!(fidelity(&bert, &q4k, &mut tok) > 0.9);
    for dtype in [HalfType::F16, HalfType::Bf16] {
        let (half, reports) = cast(&bert, dtype).unwrap().into_parts();
        assert!(fidelity(&bert, &half, &mut tok) > 0.99);
        let total: usize = reports.iter().map(|r| r.bytes).sum();
        let full: usize = bert
            .layer_reports(&|_| None)
            .unwrap()
            .iter()
            .map(|r| r.bytes)
            .sum();
        assert!(total < full);
    }
}

#[test]
fn embeddings_quantize_on_request_and_shrink_the_stored_size() {
    let (_d, bert, mut tok) = tiny();
    let (q, reports) = quantize(&bert, BlockFormat::Q8_0).unwrap().into_parts();
    let (all, emb) = quantize_embeddings(&q, BlockFormat::Q8_0).unwrap();
    assert_eq!(emb.format, "f32+q8_0");
    assert!(
        emb.bytes < reports[0].bytes,
        "{} vs {}",
        emb.bytes,
        reports[0].bytes
    );
    assert!(fidelity(&bert, &all, &mut tok) > 0.99);
    assert!(
        fidelity(&q, &all, &mut tok) < 1.0 - 1e-7,
        "the rounding reaches the output"
    );
    let technique: Technique = "q4_0-all".parse().unwrap();
    assert_eq!(
        technique.post(),
        Some(&PostStep::Quantize {
            format: BlockFormat::Q4_0,
            embeddings: true
        })
    );
}

#[test]
fn structured_pruning_removes_heads_and_neurons_and_round_trips() {
    let (_d, bert, mut tok) = tiny();
    for norm in [Norm::L2, Norm::L1] {
        let pruned = prune_bert_structured(&bert, 0.5, norm).unwrap();
        for layer in &pruned.layers {
            assert_eq!(layer.heads, 2);
            assert_eq!(layer.intermediate.out_dim, 128);
            assert_eq!(layer.qkv.out_dim, 3 * 2 * 16);
        }
        assert!(pruned.parameter_count() < bert.parameter_count());
        let f = fidelity(&bert, &pruned, &mut tok);
        assert!(f > 0.0 && f < 0.9999, "pruning changes the output: {f}");
        let again =
            Bert::from_tensors(&bert.config, &pruned.to_tensors().unwrap(), "saved").unwrap();
        assert!(
            (fidelity(&pruned, &again, &mut tok) - 1.0).abs() < 1e-5,
            "saved checkpoint reloads"
        );
    }
    let at_least_one = prune_bert_structured(&bert, 0.99, Norm::L2).unwrap();
    assert!(at_least_one
        .layers
        .iter()
        .all(|l| l.heads == 1 && l.intermediate.out_dim >= 1));
}

#[test]
fn distillation_trains_a_shallower_student_towards_the_teacher() {
    let (_d, bert, mut tok) = tiny();
    let texts: Vec<&str> = TEXTS.iter().cycle().take(48).copied().collect();
    let dc = DistillConfig {
        student_layers: vec![1],
        texts: 48,
        seq_len: 16,
        batch_size: 8,
        learning_rate: 3e-3,
        seed: 0,
        loss: "cosine".into(),
    };
    let start = Bert {
        layers: vec![bert.layers[1].clone()],
        ..bert.clone()
    };
    let before = fidelity(&bert, &start, &mut tok);
    let student = distill_bert(&bert, &mut tok, &texts, &dc, "tiny").unwrap();
    assert_eq!(student.layers.len(), 1);
    let after = fidelity(&bert, &student, &mut tok);
    assert!(
        after > before,
        "distillation should move the student towards the teacher: {before} -> {after}"
    );
}

#[test]
fn broken_checkpoints_give_errors_that_name_the_file() {
    let (dir, _, _) = tiny();
    let files = ModelFiles::locate(dir.path(), "test").unwrap();
    std::fs::write(&files.config, "{\"hidden_size\": 64,").unwrap();
    let e = files.config().unwrap_err().to_string();
    assert!(
        e.contains("config.json") && e.contains("not a usable BERT config.json"),
        "{e}"
    );

    let bytes = std::fs::read(&files.weights).unwrap();
    std::fs::write(&files.weights, &bytes[..bytes.len() / 2]).unwrap();
    let e = files.tensors().unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );
    assert!(
        !e.contains("fetch minilm"),
        "a user's own checkpoint is not MiniLM: {e}"
    );

    // The cheap check a run makes before it starts finds the same truncation.
    let (good, _, _) = tiny();
    slimbench_models::text::files::check_checkpoint(good.path(), "test").unwrap();
    let good_files = ModelFiles::locate(good.path(), "test").unwrap();
    let bytes = std::fs::read(&good_files.weights).unwrap();
    std::fs::write(&good_files.weights, &bytes[..bytes.len() - 10]).unwrap();
    let e = slimbench_models::text::files::check_checkpoint(good.path(), "test")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );

    std::fs::remove_file(&files.weights).unwrap();
    std::fs::write(dir.path().join("pytorch_model.bin"), b"\x80\x02pickle").unwrap();
    let e = ModelFiles::locate(dir.path(), "test")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("pytorch_model.bin") && e.contains("pickled checkpoints are refused"),
        "{e}"
    );
}

/// The CPU inference kernels against candle's ops, on every storage a technique can give a
/// Linear, with ragged padding (the texts differ in length) and pruned (uneven) layers: to 1e-4 in
/// f32 and f16; quantized layers also round their inputs to 8 bits, so a last-bit difference in
/// an input can move one step of the rounding, hence 1e-3 there.
#[test]
fn cpu_kernels_match_candle_ops_for_every_storage() {
    let (_d, bert, mut tok) = tiny();
    let input = tok.encode(TEXTS, Padding::Longest(32)).unwrap();
    let mut variants = vec![
        ("f32", bert.clone()),
        (
            "q8_0",
            quantize(&bert, BlockFormat::Q8_0).unwrap().into_parts().0,
        ),
        ("f16", cast(&bert, HalfType::F16).unwrap().model),
        (
            "pruned",
            prune_bert_structured(&bert, 0.3, Norm::L2).unwrap(),
        ),
    ];
    let int8 = Bert {
        layers: bert
            .layers
            .iter()
            .map(|l| l.map_linears(|lin| lin.int8()).unwrap())
            .collect(),
        ..bert.clone()
    };
    variants.push(("int8", int8));
    for (name, model) in &variants {
        let tolerance = if matches!(*name, "q8_0" | "int8") {
            1e-3
        } else {
            1e-4
        };
        let fast = model
            .embed(&input, false)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let reference = model
            .embed_with_candle_ops(&input, false)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (row_f, row_r) in fast.iter().zip(&reference) {
            for (f, r) in row_f.iter().zip(row_r) {
                assert!((f - r).abs() < tolerance, "{name}: {f} vs {r}");
            }
        }
    }
}
