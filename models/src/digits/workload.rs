//! The digits workload: a classifier variant timed on a fixed batch of held-out images and judged
//! by accuracy against the uncompressed model on the same split; pruned layers run dense or CSR,
//! whichever the measurement at the cell's batch size says is faster.

use std::time::Instant;

use candle_core::{Device, Tensor};

use crate::digits::data::digits_split;
use crate::digits::net::{predictions, Network};
use crate::digits::train::tensors_of;
use crate::error::{ModelError, Result};
use crate::family::Variant;
use crate::layer::LayerReport;
use crate::linears::Linears;
use crate::quality::accuracy_pct;
use crate::workload::{Built, Footprint, Quality, VariantReport, Workload, WorkloadSpec};

fn median_ms(mut f: impl FnMut() -> Result<()>, reps: usize) -> Result<f64> {
    for _ in 0..3 {
        f()?;
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// For each pruned fully connected layer, times the dense and the CSR path at `batch_size` and
/// keeps the faster (the measured break-even); the report says which and the times.
pub fn choose_sparse_layers(
    net: &Network,
    batch_size: usize,
) -> Result<(Network, Vec<LayerReport>)> {
    use candle_core::Module;
    let mut dense_layers = Vec::new();
    let mut reports = net
        .convs
        .iter()
        .map(|c| c.report())
        .collect::<Result<Vec<_>>>()?;
    for layer in &net.dense {
        if layer.weight_sparsity()? == 0.0 {
            reports.push(layer.report(Some("no zeros: dense".into())));
            dense_layers.push(layer.clone());
            continue;
        }
        let sparse = layer.to_sparse()?;
        let sparse_bytes = sparse.size_bytes();
        let x = Tensor::ones(
            (batch_size, layer.in_dim),
            candle_core::DType::F32,
            &Device::Cpu,
        )?;
        let dense_ms = median_ms(|| Ok(layer.forward(&x).map(|_| ())?), 25)?;
        let sparse_ms = median_ms(|| Ok(sparse.forward(&x).map(|_| ())?), 25)?;
        let (chosen, path) = if sparse_ms < dense_ms {
            (sparse, "csr")
        } else {
            (layer.clone(), "dense")
        };
        // Storage does not depend on the timing: a pruned layer is stored in whichever of CSR and
        // dense is smaller, whichever path runs it.
        let stored = sparse_bytes.min(layer.size_bytes());
        let mut report = chosen.report(Some(format!(
            "stored {}, runs {path}: measured at batch {batch_size}, csr {sparse_ms:.4} ms vs dense {dense_ms:.4} ms",
            if sparse_bytes < layer.size_bytes() { "csr" } else { "dense" }
        )));
        report.bytes = stored;
        reports.push(report);
        dense_layers.push(chosen);
    }
    Ok((
        Network {
            convs: net.convs.clone(),
            dense: dense_layers,
        },
        reports,
    ))
}

/// Builds the workload of one digits cell: the variant's model (dense or CSR per pruned layer
/// when no post-training step follows the pruning), the fixed timing batch, the held-out split.
pub(crate) fn build(
    spec: &WorkloadSpec,
    device: &Device,
    variant: Variant<Network, ()>,
) -> Result<Built> {
    let cell = &spec.cell;
    let unstructured = cell.technique.prunes_unstructured() && variant.post.is_none();
    if unstructured && !device.is_cpu() {
        return Err(ModelError::NotApplicable(format!(
            "{}: unstructured pruning pays off through the CSR sparse kernel (sprs), which has no \
             CUDA kernel; on {} the zeros would run dense like fp32",
            cell.technique, cell.device
        )));
    }
    let (model, layers) = if unstructured {
        choose_sparse_layers(&variant.trained, cell.batch_size)?
    } else {
        variant.final_model(|m| m.layer_reports(&|_| None))?
    };
    let (_, test) = digits_split()?;
    let (test_x, test_y) = tensors_of(&test)?;
    let rows: Vec<usize> = (0..cell.batch_size).map(|i| i % test.len()).collect();
    let (batch, _) = tensors_of(&test.select(&rows))?;
    let (model, base) = (
        model.to_device(device)?,
        variant.base.model.to_device(device)?,
    );
    let (batch, test_x) = (batch.to_device(device)?, test_x.to_device(device)?);
    // Bytes as stored: the layer reports' sums (sparse storage where a pruned layer is smaller so).
    let report = VariantReport {
        footprint: Footprint {
            parameter_count: model.parameter_count(),
            nonzero_parameter_count: model.nonzero_parameter_count()?,
            model_bytes: layers.iter().map(|l| l.bytes).sum(),
        },
        technique_params: serde_json::json!({ "steps": variant.params }),
        layers,
        // Counted from the layers' shapes: convolutions at the image's size, then the fully
        // connected layers (`Network::flops_per_item`).
        flops_per_item: Some(model.flops_per_item()),
    };
    let workload = ClassifierWorkload {
        model,
        base,
        device: device.clone(),
        batch,
        test_x,
        test_labels: test_y.to_vec1::<u32>()?,
        batch_size: cell.batch_size,
    };
    Ok(Built {
        workload: Box::new(workload),
        report,
    })
}

/// A classifier variant with its fixed timing batch and held-out split.
struct ClassifierWorkload {
    model: Network,
    base: Network,
    device: Device,
    batch: Tensor,
    test_x: Tensor,
    test_labels: Vec<u32>,
    batch_size: usize,
}

impl Workload for ClassifierWorkload {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn run_batch(&mut self) -> Result<()> {
        let logits = self.model.forward(&self.batch)?;
        // CUDA runs asynchronously: the batch is done only when the device says so (a no-op on the
        // CPU). Keeping the result also stops it from being optimised away.
        self.device.synchronize()?;
        std::hint::black_box(logits);
        Ok(())
    }

    fn quality(&self) -> Result<Quality> {
        let variant = predictions(&self.model.forward(&self.test_x)?)?;
        let baseline = predictions(&self.base.forward(&self.test_x)?)?;
        Ok(Quality {
            metric: "accuracy".into(),
            value_pct: accuracy_pct(&variant, &self.test_labels),
            baseline_pct: accuracy_pct(&baseline, &self.test_labels),
            items: self.test_labels.len(),
            fidelity: None,
            language: None,
            paired: Some(crate::quality::PairedOutcomes::from_correct(
                &crate::quality::correct(&baseline, &self.test_labels),
                &crate::quality::correct(&variant, &self.test_labels),
            )),
        })
    }
}
