//! slimbench's graphs on ONNX Runtime: the digits networks' export gives the own engine's f32
//! outputs to 1e-4, and each ONNX format of a Linear multiplies by the weights it claims to
//! (int8 dynamic, 4-bit `MatMulNBits` with and without zero points). Needs the library
//! (`slimbench fetch onnxruntime` or `ORT_DYLIB_PATH`); without it each test says why it skips,
//! unless SLIMBENCH_REQUIRE_ORT=1 (CI sets it) makes its absence a failure.

use candle_core::{Device, Tensor};
use slimbench_models::digits::data::digits_split;
use slimbench_models::digits::net::Network;
use slimbench_models::digits::{cnn, mlp, onnx};
use slimbench_models::onnx::graph::{decode, Dim, GraphBuilder};
use slimbench_models::onnx::linear::{dequantized, emit, LinearParams, OnnxFormat};
use slimbench_models::onnx::proto::tensor_proto::DataType;
use slimbench_models::onnx::runtime::{self, Input, OrtModel};

fn library_or_skip(test: &str) -> bool {
    match runtime::library_path() {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("SLIMBENCH_REQUIRE_ORT").is_ok_and(|v| v == "1") {
                panic!("SLIMBENCH_REQUIRE_ORT=1 but ONNX Runtime is absent: {e}");
            }
            eprintln!("skipping {test}: {e}");
            false
        }
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check_digits_export(net: &Network, what: &str) {
    let (_, test) = digits_split().unwrap();
    let (bytes, reports) = onnx::graph(net, OnnxFormat::F32).unwrap();
    assert_eq!(reports.len(), net.convs.len() + net.dense.len());
    let model_proto = decode(&bytes).expect("the graph decodes as an ONNX model");
    assert_eq!(
        model_proto.graph.as_ref().unwrap().input[0].name.as_deref(),
        Some(onnx::INPUT)
    );
    let mut model = OrtModel::new(
        &bytes,
        2,
        vec![Input::F32(
            vec![test.len(), test.dim],
            test.features.clone(),
        )],
    )
    .unwrap();
    let (shape, got) = model.run().unwrap().remove(0);
    assert_eq!(shape, vec![test.len(), 10]);
    let x = Tensor::from_slice(&test.features, (test.len(), test.dim), &Device::Cpu).unwrap();
    assert_within_1e_4(&got, &net.forward(&x).unwrap(), &format!("{what}'s logits"));
}

/// ONNX Runtime's `got` against the own engine's `want`, to 1e-4 in every value.
fn assert_within_1e_4(got: &[f32], want: &Tensor, what: &str) {
    let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let diff = max_abs_diff(got, &want);
    assert!(
        diff <= 1e-4,
        "{what}: ONNX Runtime's differ from the own engine's by {diff}"
    );
}

#[test]
fn the_digits_mlp_and_cnn_exported_give_the_own_engines_logits_to_1e_4() {
    if !library_or_skip("the digits export check") {
        return;
    }
    check_digits_export(&Network::init(&mlp::spec(), 7).unwrap(), "digits-mlp");
    check_digits_export(&Network::init(&cnn::spec(), 7).unwrap(), "digits-cnn");
}

/// A Linear of `out x inputs` with a ragged last block (inputs not a multiple of 32), run alone
/// in `format` on rows `x`; returns ONNX Runtime's output.
fn run_linear(format: OnnxFormat, x: &[f32], rows: usize, p: LinearParams<'_>) -> Vec<f32> {
    let mut g = GraphBuilder::new("linear");
    let input = g.input(
        "x",
        DataType::Float,
        &[Dim::Named("rows"), Dim::Fixed(p.inputs)],
    );
    let y = emit(&mut g, &input, p, format);
    g.output(
        &y,
        "y",
        DataType::Float,
        &[Dim::Named("rows"), Dim::Fixed(p.out)],
    );
    let mut model = OrtModel::new(
        &g.finish(),
        1,
        vec![Input::F32(vec![rows, p.inputs], x.to_vec())],
    )
    .unwrap();
    model.run().unwrap().remove(0).1
}

fn reference(
    x: &[f32],
    rows: usize,
    w: &[f32],
    bias: &[f32],
    out: usize,
    inputs: usize,
) -> Vec<f32> {
    let mut y = vec![0.0; rows * out];
    for r in 0..rows {
        for o in 0..out {
            let dot: f32 = (0..inputs)
                .map(|i| x[r * inputs + i] * w[o * inputs + i])
                .sum();
            y[r * out + o] = dot + bias[o];
        }
    }
    y
}

#[test]
fn each_onnx_format_of_a_linear_multiplies_by_the_weights_it_stores() {
    if !library_or_skip("the ONNX formats check") {
        return;
    }
    let (out, inputs, rows) = (24, 80, 5);
    let weight: Vec<f32> = (0..out * inputs)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
        .collect();
    let bias: Vec<f32> = (0..out).map(|i| i as f32 * 0.1 - 1.0).collect();
    let x: Vec<f32> = (0..rows * inputs)
        .map(|i| ((i * 13 % 29) as f32 - 14.0) / 10.0)
        .collect();
    let p = LinearParams {
        name: "fc",
        out,
        inputs,
        weight: &weight,
        bias: &bias,
    };
    let exact = reference(&x, rows, &weight, &bias, out, inputs);
    let scale = exact.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for format in [
        OnnxFormat::F32,
        OnnxFormat::F16,
        OnnxFormat::Int8Dynamic,
        OnnxFormat::Q4 { zero_points: false },
        OnnxFormat::Q4 { zero_points: true },
    ] {
        let got = run_linear(format, &x, rows, p);
        let stored = reference(&x, rows, &dequantized(p, format), &bias, out, inputs);
        // Against the weights as stored, only the activations' rounding is left (none for f32
        // and for f16 weights, widened and multiplied in f32; 8 bits for int8 dynamic and
        // MatMulNBits' accuracy level 4): within 1% of the outputs' scale. A wrong nibble order
        // or scale would be off by tens of percent.
        let diff = max_abs_diff(&got, &stored);
        let bound = match format {
            OnnxFormat::F32 | OnnxFormat::F16 => 1e-4,
            _ => 0.01 * scale,
        };
        assert!(
            diff <= bound,
            "{}: ONNX Runtime differs from the stored weights' product by {diff} (bound {bound})",
            format.name()
        );
        // And the format's rounding of the weights moves the outputs, but by little.
        if format != OnnxFormat::F32 {
            let moved = max_abs_diff(&stored, &exact);
            assert!(
                moved > 0.0 && moved < 0.2 * scale,
                "{}: {moved}",
                format.name()
            );
        }
    }
}

fn tiny_bert() -> (
    tempfile::TempDir,
    slimbench_models::text::bert::Bert,
    slimbench_models::text::tokenize::TextTokenizer,
) {
    use slimbench_models::text::files::ModelFiles;
    let dir = tempfile::tempdir().unwrap();
    slimbench_models::text::tiny::write_tiny_checkpoint(dir.path(), 7).unwrap();
    let files = ModelFiles::locate(dir.path(), "test").unwrap();
    let bert = slimbench_models::text::bert::Bert::from_tensors(
        &files.config().unwrap(),
        &files.tensors().unwrap(),
        "tiny",
    )
    .unwrap();
    let tok = slimbench_models::text::tokenize::TextTokenizer::load(&files.tokenizer).unwrap();
    (dir, bert, tok)
}

fn check_bert_export(bert: &slimbench_models::text::bert::Bert, what: &str) {
    use slimbench_models::text::onnx as text_onnx;
    use slimbench_models::text::tokenize::Padding;
    let (_dir, _, mut tok) = tiny_bert();
    // Texts of different lengths: the shorter ones padded, so the mask and the pooling count.
    let texts = [
        "win free money now !",
        "please see the attached report .",
        "team lunch tomorrow ? thanks , the small model is fast",
    ];
    let input = tok.encode(&texts, Padding::Longest(32)).unwrap();
    let (bytes, _) = text_onnx::graph(bert, OnnxFormat::F32).unwrap();
    let mut model = OrtModel::new(&bytes, 2, text_onnx::inputs(&input).unwrap()).unwrap();
    let got = text_onnx::embed(&mut model, &input)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_within_1e_4(
        &got,
        &bert.embed(&input, false).unwrap(),
        &format!("{what}'s embeddings"),
    );
}

#[test]
fn a_bert_exported_with_its_pooling_gives_the_own_engines_embeddings_to_1e_4() {
    if !library_or_skip("the BERT export check") {
        return;
    }
    let (_dir, bert, _) = tiny_bert();
    check_bert_export(&bert, "tiny BERT");
    // Structured pruning leaves fewer heads and a narrower feed-forward: a smaller graph.
    let pruned = slimbench_models::text::compress::prune_bert_structured(
        &bert,
        0.5,
        slimbench_models::pruning::Norm::L2,
    )
    .unwrap();
    assert!(pruned.layers[0].heads < bert.layers[0].heads);
    check_bert_export(&pruned, "tiny BERT pruned to half its heads");
}
