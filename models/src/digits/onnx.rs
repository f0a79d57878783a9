//! A digits network as an ONNX graph (`pixels` `batch x 64` in, `logits` `batch x 10` out: the
//! convolutions as `Conv` + `Relu` + `MaxPool`, each Linear in the cell's ONNX format) and its
//! workload on ONNX Runtime, judged by accuracy on the held-out split as the own engine's is.

use candle_core::Tensor;

use crate::digits::data::{digits_split, Dataset, DIGITS_CLASSES, DIGITS_FEATURES};
use crate::digits::net::{predictions, Network, IMAGE_SIDE};
use crate::digits::train::tensors_of;
use crate::error::Result;
use crate::family::Variant;
use crate::layer::LayerReport;
use crate::onnx::graph::{Attr, Dim, GraphBuilder};
use crate::onnx::linear::OnnxFormat;
use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::runtime::{Input, OrtModel};
use crate::onnx::workload::{engine_params, LinearValues, OrtWorkload};
use crate::quality::accuracy_pct;
use crate::workload::{Built, Footprint, Quality, VariantReport, WorkloadSpec};

/// The graph's input: pixels scaled to 0..1, `batch x 64`.
pub const INPUT: &str = "pixels";
/// The graph's output: `batch x 10` logits.
pub const OUTPUT: &str = "logits";

/// `net` as an ONNX graph with every Linear in `format`, and each part's report.
pub fn graph(net: &Network, format: OnnxFormat) -> Result<(Vec<u8>, Vec<LayerReport>)> {
    let mut g = GraphBuilder::new("slimbench-digits");
    let batch = Dim::Named("batch");
    let mut h = g.input(
        INPUT,
        DataType::Float,
        &[batch.clone(), Dim::Fixed(DIGITS_FEATURES)],
    );
    let mut reports = Vec::new();
    if !net.convs.is_empty() {
        let side = IMAGE_SIDE as i64;
        let shape = g.initializer_i64("image_shape", &[-1, 1, side, side]);
        h = g.node("Reshape", &[&h, &shape], vec![]);
        for conv in &net.convs {
            let dims = conv.weight.dims().to_vec();
            let w = g.initializer_f32(
                &format!("{}.weight", conv.name),
                &dims,
                &conv.weight.flatten_all()?.to_vec1::<f32>()?,
            );
            let b = g.initializer_f32(
                &format!("{}.bias", conv.name),
                &[conv.out_channels()],
                &conv.bias.to_vec1::<f32>()?,
            );
            h = g.node(
                "Conv",
                &[&h, &w, &b],
                vec![
                    ("kernel_shape", Attr::Ints(vec![3, 3])),
                    ("pads", Attr::Ints(vec![1, 1, 1, 1])),
                ],
            );
            h = g.node("Relu", &[&h], vec![]);
            let mut report = conv.report()?;
            report.note = Some("ONNX Runtime: Conv + Relu, f32".into());
            reports.push(report);
        }
        h = g.node(
            "MaxPool",
            &[&h],
            vec![
                ("kernel_shape", Attr::Ints(vec![2, 2])),
                ("strides", Attr::Ints(vec![2, 2])),
            ],
        );
        h = g.node("Flatten", &[&h], vec![("axis", Attr::Int(1))]);
    }
    for (i, layer) in net.dense.iter().enumerate() {
        let values = LinearValues::of(layer)?;
        h = values.emit(&mut g, &h, format);
        reports.push(values.report(format));
        if i + 1 < net.dense.len() {
            h = g.node("Relu", &[&h], vec![]);
        }
    }
    g.output(
        &h,
        OUTPUT,
        DataType::Float,
        &[batch, Dim::Fixed(DIGITS_CLASSES)],
    );
    Ok((g.finish(), reports))
}

fn pixels(data: &Dataset) -> Input {
    Input::F32(vec![data.len(), data.dim], data.features.clone())
}

/// Builds a digits cell on ONNX Runtime: the variant's f32 network (after its training steps,
/// or its one-shot pruning) written in the technique's ONNX format, timed on the same fixed
/// batch as the own engine's cell.
pub(crate) fn build(spec: &WorkloadSpec, variant: Variant<Network, ()>) -> Result<Built> {
    let cell = &spec.cell;
    let format = OnnxFormat::of(&cell.technique)?;
    let net = variant.f32_model_to_export(format == OnnxFormat::F32);
    let (bytes, layers) = graph(net, format)?;
    let (_, test) = digits_split()?;
    let rows: Vec<usize> = (0..cell.batch_size).map(|i| i % test.len()).collect();
    let threads = crate::kernels::thread_count();
    let model = OrtModel::new(&bytes, threads, vec![pixels(&test.select(&rows))])?;
    let report = VariantReport {
        footprint: Footprint {
            parameter_count: net.parameter_count(),
            nonzero_parameter_count: net.nonzero_parameter_count()?,
            model_bytes: layers.iter().map(|l| l.bytes).sum(),
        },
        technique_params: serde_json::json!({
            "steps": variant.params,
            "engine": engine_params(format, threads)?,
        }),
        layers,
        flops_per_item: Some(net.flops_per_item()),
    };
    let quality = held_out_quality(&bytes, threads, &variant.base.model, &test)?;
    Ok(OrtWorkload::built(model, cell.batch_size, quality, report))
}

/// Accuracy of the graph's predictions on the held-out split, against the uncompressed model's
/// (on the own engine) on the same images.
fn held_out_quality(
    graph: &[u8],
    threads: usize,
    base: &Network,
    test: &Dataset,
) -> Result<Quality> {
    let mut whole = OrtModel::new(graph, threads, vec![pixels(test)])?;
    let (shape, logits) = whole.run()?.remove(0);
    let variant = predictions(&Tensor::from_vec(
        logits,
        (shape[0], shape[1]),
        &candle_core::Device::Cpu,
    )?)?;
    let (test_x, _) = tensors_of(test)?;
    let baseline = predictions(&base.forward(&test_x)?)?;
    let labels = &test.labels;
    Ok(Quality {
        metric: "accuracy".into(),
        value_pct: accuracy_pct(&variant, labels),
        baseline_pct: accuracy_pct(&baseline, labels),
        items: labels.len(),
        fidelity: None,
        language: None,
        paired: Some(crate::quality::PairedOutcomes::from_correct(
            &crate::quality::correct(&baseline, labels),
            &crate::quality::correct(&variant, labels),
        )),
    })
}
