//! A BERT sentence encoder as an ONNX graph (`input_ids`, `token_type_ids`, `attention_mask`
//! int64 `batch x tokens` in; `sentence_embedding` `batch x hidden` out: embeddings, every layer,
//! mean pooling over real tokens and L2 normalisation, as sentence-transformers' MiniLM) and its
//! workload on ONNX Runtime, judged by fidelity and spam accuracy as the own engine's is.

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::family::Variant;
use crate::layer::LayerReport;
use crate::linears::Linears;
use crate::onnx::graph::{Attr, Dim, GraphBuilder};
use crate::onnx::linear::OnnxFormat;
use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::runtime::{Input, OrtModel};
use crate::onnx::workload::{engine_params, LinearValues, OrtWorkload};
use crate::text::bert::{Bert, LayerNorm};
use crate::text::tokenize::{Encoded, Padding, TextTokenizer};
use crate::text::workload::{email_split, text_quality, DEFAULT_SEQ_LEN};
use crate::text::TextSource;
use crate::workload::{Built, Footprint, VariantReport, WorkloadSpec};

/// The graph's inputs, in order.
pub const INPUTS: [&str; 3] = ["input_ids", "token_type_ids", "attention_mask"];
/// The graph's output.
pub const OUTPUT: &str = "sentence_embedding";

fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

fn layer_norm(g: &mut GraphBuilder, x: &str, norm: &LayerNorm, name: &str) -> Result<String> {
    let n = norm.weight.elem_count();
    let w = g.initializer_f32(&format!("{name}.weight"), &[n], &values(&norm.weight)?);
    let b = g.initializer_f32(&format!("{name}.bias"), &[n], &values(&norm.bias)?);
    Ok(g.node(
        "LayerNormalization",
        &[x, &w, &b],
        vec![
            ("axis", Attr::Int(-1)),
            ("epsilon", Attr::Float(norm.eps as f32)),
        ],
    ))
}

fn scalar(g: &mut GraphBuilder, name: &str, v: f32) -> String {
    g.initializer_f32(name, &[], &[v])
}

/// GELU as erf, in the pattern ONNX Runtime fuses into its `Gelu` kernel:
/// `0.5 * x * (1 + erf(x / sqrt 2))`.
fn gelu(g: &mut GraphBuilder, x: &str) -> String {
    let root2 = scalar(g, "sqrt2", std::f32::consts::SQRT_2);
    let one = scalar(g, "one", 1.0);
    let half = scalar(g, "half", 0.5);
    let d = g.node("Div", &[x, &root2], vec![]);
    let e = g.node("Erf", &[&d], vec![]);
    let a = g.node("Add", &[&e, &one], vec![]);
    let m = g.node("Mul", &[x, &a], vec![]);
    g.node("Mul", &[&m, &half], vec![])
}

/// `bert` as an ONNX graph with every Linear in `format`, and each part's report.
pub fn graph(bert: &Bert, format: OnnxFormat) -> Result<(Vec<u8>, Vec<LayerReport>)> {
    let mut g = GraphBuilder::new("slimbench-bert");
    let (batch, tokens) = (Dim::Named("batch"), Dim::Named("tokens"));
    let ids: Vec<String> = INPUTS
        .iter()
        .map(|n| g.input(n, DataType::Int64, &[batch.clone(), tokens.clone()]))
        .collect();
    let hidden = bert.config.hidden_size;
    let head_dim = bert.config.head_dim();
    // Embeddings: words + types + the first `tokens` positions, then their norm.
    let words = g.initializer_f32(
        "word_embeddings",
        bert.word_embeddings.dims(),
        &values(&bert.word_embeddings)?,
    );
    let types = g.initializer_f32(
        "type_embeddings",
        bert.type_embeddings.dims(),
        &values(&bert.type_embeddings)?,
    );
    let positions = g.initializer_f32(
        "position_embeddings",
        bert.position_embeddings.dims(),
        &values(&bert.position_embeddings)?,
    );
    let w = g.node("Gather", &[&words, &ids[0]], vec![]);
    let t = g.node("Gather", &[&types, &ids[1]], vec![]);
    let length = g.node_in(
        "",
        "Shape",
        &[&ids[0]],
        1,
        vec![("start", Attr::Int(1)), ("end", Attr::Int(2))],
    );
    let zero = g.initializer_i64("zero", &[0]);
    let p = g.node("Slice", &[&positions, &zero, &length[0], &zero], vec![]);
    let wt = g.node("Add", &[&w, &t], vec![]);
    let sum = g.node("Add", &[&wt, &p], vec![]);
    let mut x = layer_norm(&mut g, &sum, &bert.embed_norm, "embeddings.norm")?;
    // The mask: 0 where a token is real, -1e4 where it is padding, `batch x 1 x 1 x tokens`.
    let mask = g.node(
        "Cast",
        &[&ids[2]],
        vec![("to", Attr::Int(DataType::Float as i64))],
    );
    let one = scalar(&mut g, "one", 1.0);
    let big = scalar(&mut g, "mask_scale", 1e4);
    let m1 = g.node("Sub", &[&mask, &one], vec![]);
    let bias2 = g.node("Mul", &[&m1, &big], vec![]);
    let axes12 = g.initializer_i64("axes12", &[1, 2]);
    let mask_bias = g.node("Unsqueeze", &[&bias2, &axes12], vec![]);
    let scale = scalar(&mut g, "attention_scale", 1.0 / (head_dim as f32).sqrt());
    let mut reports = vec![bert.embeddings_report()];
    for (i, layer) in bert.layers.iter().enumerate() {
        let width = layer.heads * head_dim;
        let qkv = LinearValues::of(&layer.qkv)?;
        let attn_out = LinearValues::of(&layer.attn_out)?;
        let intermediate = LinearValues::of(&layer.intermediate)?;
        let output = LinearValues::of(&layer.output)?;
        let fused = qkv.emit(&mut g, &x, format);
        let split = g.initializer_i64("split", &[width as i64; 3]);
        let parts = g.node_in(
            "",
            "Split",
            &[&fused, &split],
            3,
            vec![("axis", Attr::Int(2))],
        );
        let heads_shape =
            g.initializer_i64("heads_shape", &[0, 0, layer.heads as i64, head_dim as i64]);
        let by_head = |g: &mut GraphBuilder, v: &str, perm: Vec<i64>| {
            let r = g.node("Reshape", &[v, &heads_shape], vec![]);
            g.node("Transpose", &[&r], vec![("perm", Attr::Ints(perm))])
        };
        let q = by_head(&mut g, &parts[0], vec![0, 2, 1, 3]);
        let k_t = by_head(&mut g, &parts[1], vec![0, 2, 3, 1]);
        let v = by_head(&mut g, &parts[2], vec![0, 2, 1, 3]);
        let scores = g.node("MatMul", &[&q, &k_t], vec![]);
        let scaled = g.node("Mul", &[&scores, &scale], vec![]);
        let masked = g.node("Add", &[&scaled, &mask_bias], vec![]);
        let probs = g.node("Softmax", &[&masked], vec![("axis", Attr::Int(-1))]);
        let context = g.node("MatMul", &[&probs, &v], vec![]);
        let context = g.node(
            "Transpose",
            &[&context],
            vec![("perm", Attr::Ints(vec![0, 2, 1, 3]))],
        );
        let merged_shape = g.initializer_i64("merged_shape", &[0, 0, width as i64]);
        let context = g.node("Reshape", &[&context, &merged_shape], vec![]);
        let attended = attn_out.emit(&mut g, &context, format);
        let residual = g.node("Add", &[&attended, &x], vec![]);
        let h1 = layer_norm(
            &mut g,
            &residual,
            &layer.attn_norm,
            &format!("layers.{i}.attn_norm"),
        )?;
        let inner = intermediate.emit(&mut g, &h1, format);
        let inner = gelu(&mut g, &inner);
        let out = output.emit(&mut g, &inner, format);
        let residual = g.node("Add", &[&out, &h1], vec![]);
        x = layer_norm(
            &mut g,
            &residual,
            &layer.out_norm,
            &format!("layers.{i}.out_norm"),
        )?;
        for values in [&qkv, &attn_out, &intermediate, &output] {
            reports.push(values.report(format));
        }
    }
    // Mean over real tokens, then L2 normalisation.
    let axis1 = g.initializer_i64("axis1", &[1]);
    let axis2 = g.initializer_i64("axis2", &[2]);
    let m = g.node("Unsqueeze", &[&mask, &axis2], vec![]);
    let kept = g.node("Mul", &[&x, &m], vec![]);
    let summed = g.node(
        "ReduceSum",
        &[&kept, &axis1],
        vec![("keepdims", Attr::Int(0))],
    );
    let count = g.node(
        "ReduceSum",
        &[&mask, &axis1],
        vec![("keepdims", Attr::Int(1))],
    );
    let tiny = scalar(&mut g, "count_floor", 1e-9);
    let count = g.node("Max", &[&count, &tiny], vec![]);
    let mean = g.node("Div", &[&summed, &count], vec![]);
    let squares = g.node("Mul", &[&mean, &mean], vec![]);
    let total = g.node(
        "ReduceSum",
        &[&squares, &axis1],
        vec![("keepdims", Attr::Int(1))],
    );
    let norm = g.node("Sqrt", &[&total], vec![]);
    let floor = scalar(&mut g, "norm_floor", 1e-12);
    let norm = g.node("Max", &[&norm, &floor], vec![]);
    let embedding = g.node("Div", &[&mean, &norm], vec![]);
    g.output(
        &embedding,
        OUTPUT,
        DataType::Float,
        &[batch, Dim::Fixed(hidden)],
    );
    Ok((g.finish(), reports))
}

fn ints(t: &Tensor) -> Result<Vec<i64>> {
    Ok(t.flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|v| v as i64)
        .collect())
}

/// The graph's inputs for an encoded batch.
pub fn inputs(encoded: &Encoded) -> Result<Vec<Input>> {
    let (b, t) = encoded.ids.dims2()?;
    [&encoded.ids, &encoded.type_ids, &encoded.mask]
        .into_iter()
        .map(|x| Ok(Input::I64(vec![b, t], ints(x)?)))
        .collect()
}

/// Runs `graph` on `encoded`; returns the embeddings `batch x hidden`.
pub fn embed(model: &mut OrtModel, encoded: &Encoded) -> Result<Tensor> {
    model.set_inputs(inputs(encoded)?)?;
    let (shape, data) = model.run()?.remove(0);
    Ok(Tensor::from_vec(data, (shape[0], shape[1]), &Device::Cpu)?)
}

/// Builds a text cell on ONNX Runtime: the variant's f32 encoder (after its training steps, or
/// its one-shot pruning) written in the technique's ONNX format, timed on the same fixed batch
/// of emails as the own engine's cell, its quality from ONNX Runtime's embeddings.
pub(crate) fn build(spec: &WorkloadSpec, variant: Variant<Bert, TextSource>) -> Result<Built> {
    let cell = &spec.cell;
    let format = OnnxFormat::of(&cell.technique)?;
    let seq_len = cell
        .dim(&crate::dimension::SEQ_LEN)
        .unwrap_or(DEFAULT_SEQ_LEN);
    let bert = variant.f32_model_to_export(format == OnnxFormat::F32);
    let positions = bert.position_embeddings.dim(0)?;
    if seq_len > positions {
        return Err(ModelError::NotApplicable(format!(
            "sequence length {seq_len} exceeds the model's {positions} position embeddings"
        )));
    }
    let (bytes, layers) = graph(bert, format)?;
    let threads = crate::kernels::thread_count();
    let split = email_split()?;
    let texts: Vec<&str> = (0..cell.batch_size)
        .map(|i| split.test[i % split.test.len()].text.as_str())
        .collect();
    let mut tokenizer = TextTokenizer::load(&variant.base.source.files.tokenizer)?;
    let batch = tokenizer.encode(&texts, Padding::Fixed(seq_len))?;
    let mut model = OrtModel::new(&bytes, threads, inputs(&batch)?)?;
    let key = format!("{}|engine ort {}", variant.key, format.name());
    let quality = text_quality(
        &mut |encoded: &Encoded| embed(&mut model, encoded),
        &variant.base,
        &key,
        &split,
        &mut tokenizer,
        &spec.cache_dir,
        &cell.model,
    )?;
    model.set_inputs(inputs(&batch)?)?;
    let report = VariantReport {
        footprint: Footprint {
            parameter_count: bert.parameter_count(),
            nonzero_parameter_count: bert.nonzero_parameter_count()?,
            model_bytes: layers.iter().map(|l| l.bytes).sum(),
        },
        flops_per_item: Some(bert.flops_per_sequence(seq_len)),
        technique_params: serde_json::json!({
            "steps": variant.params,
            "seq_len": seq_len,
            "engine": engine_params(format, threads)?,
            "model_files": variant.base.source.files.dir,
            "linears": bert.linear_in_dims().len(),
        }),
        layers,
    };
    Ok(OrtWorkload::built(model, cell.batch_size, quality, report))
}
