//! End-to-end checks of the digits models and every compression technique on them.

use candle_core::{Device, Tensor};
use slimbench_models::cache::CacheOutcome;
use slimbench_models::catalog::build_workload;
use slimbench_models::digits::data::digits_split;
use slimbench_models::digits::net::{predictions, Network};
use slimbench_models::digits::prune::prune_unstructured;
use slimbench_models::digits::train::tensors_of;
use slimbench_models::digits::Digits;
use slimbench_models::family::{train_chain, Family, Trained};
use slimbench_models::kernels::blocks::BlockFormat;
use slimbench_models::linears::quantize;
use slimbench_models::pruning::Scope;
use slimbench_models::quality::accuracy_pct;
use slimbench_models::workload::{Cell, WorkloadSpec};
use slimbench_models::ModelError;

fn prepare_base(model: &str, dir: &std::path::Path) -> (Network, CacheOutcome) {
    let base = Digits.load_base(model, dir).unwrap();
    (base.model, base.outcome.unwrap())
}

fn prepare_variant(model: &str, technique: &str, dir: &std::path::Path) -> Trained<Network, ()> {
    train_chain(&Digits, model, &technique.parse().unwrap(), dir).unwrap()
}

fn test_accuracy(model: &Network) -> f64 {
    let (_, test) = digits_split().unwrap();
    let (x, _) = tensors_of(&test).unwrap();
    accuracy_pct(
        &predictions(&model.forward(&x).unwrap()).unwrap(),
        &test.labels,
    )
}

/// One cache for the whole test binary, so each variant is trained once.
fn cache() -> &'static tempfile::TempDir {
    static CACHE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| tempfile::tempdir().unwrap())
}

#[test]
fn mlp_and_cnn_train_to_95_percent_and_q8_0_stays_within_a_point() {
    let dir = cache();
    for model in ["digits-mlp", "digits-cnn"] {
        let (base, _) = prepare_base(model, dir.path());
        let fp32 = test_accuracy(&base);
        assert!(fp32 >= 95.0, "{model}: fp32 {fp32:.2}% < 95%");
        let q8 = quantize(&base, BlockFormat::Q8_0).unwrap();
        let q8_acc = test_accuracy(&q8.model);
        assert!(
            (fp32 - q8_acc).abs() <= 1.0,
            "{model}: q8_0 {q8_acc:.2}% vs {fp32:.2}%"
        );
        assert!(q8.model.size_bytes() < base.size_bytes());
        let q4 = quantize(&base, BlockFormat::Q4_0).unwrap();
        println!(
            "{model}: fp32 {fp32:.2}%  q8_0 {q8_acc:.2}%  q4_0 {:.2}%",
            test_accuracy(&q4.model)
        );
        let (_, again) = prepare_base(model, dir.path());
        assert_eq!(again, CacheOutcome::Hit, "second prepare reads the cache");
    }
}

#[test]
fn structured_pruning_50_with_finetune_keeps_accuracy_with_fewer_parameters() {
    let dir = cache();
    for model in ["digits-mlp", "digits-cnn"] {
        let v = prepare_variant(model, "prune-structured-50", dir.path());
        let (base, pruned) = (test_accuracy(&v.base.model), test_accuracy(&v.model));
        println!(
            "{model}: structured 50%: {pruned:.2}% vs {base:.2}%, params {} vs {}",
            v.model.parameter_count(),
            v.base.model.parameter_count()
        );
        assert!(base - pruned <= 2.0, "{model}: {pruned:.2}% vs {base:.2}%");
        assert!(v.model.parameter_count() < v.base.model.parameter_count() * 6 / 10);
    }
    let v = prepare_variant("digits-mlp", "prune-structured-50", dir.path());
    let widths: Vec<usize> = v.model.dense.iter().map(|l| l.out_dim).collect();
    assert_eq!(
        widths,
        [128, 64, 10],
        "half of each hidden layer's neurons removed"
    );
}

#[test]
fn unstructured_90_is_exact_and_the_sparse_path_matches_the_dense_one() {
    let dir = cache();
    let (base, _) = prepare_base("digits-mlp", dir.path());
    let (pruned, masks) = prune_unstructured(&base, 0.9, Scope::PerLayer).unwrap();
    for layer in &pruned.dense {
        let n = layer.in_dim * layer.out_dim;
        let zeros = (layer.weight_sparsity().unwrap() * n as f64).round() as usize;
        assert_eq!(zeros, (0.9 * n as f64).round() as usize, "{}", layer.name);
    }
    assert_eq!(masks.len(), 3);
    let (global, _) = prune_unstructured(&base, 0.9, Scope::Global).unwrap();
    let total: usize = global.dense.iter().map(|l| l.in_dim * l.out_dim).sum();
    let zeros: f64 = global
        .dense
        .iter()
        .map(|l| l.weight_sparsity().unwrap() * (l.in_dim * l.out_dim) as f64)
        .sum();
    assert_eq!(
        zeros.round() as usize,
        (0.9 * total as f64).round() as usize
    );

    // After the fine-tune the mask still holds, and CSR gives the dense outputs.
    let v = prepare_variant("digits-mlp", "prune-unstructured-90", dir.path());
    for layer in &v.model.dense {
        let n = layer.in_dim * layer.out_dim;
        let zeros = (layer.weight_sparsity().unwrap() * n as f64).round() as usize;
        assert!(
            zeros >= (0.9 * n as f64).round() as usize,
            "{}: mask kept",
            layer.name
        );
    }
    let sparse = Network {
        convs: vec![],
        dense: v
            .model
            .dense
            .iter()
            .map(|l| l.to_sparse().unwrap())
            .collect(),
    };
    assert!(sparse.dense.iter().all(|l| l.is_sparse()));
    for rows in [1, 7, 32] {
        let x = Tensor::randn(0f32, 1.0, (rows, 64), &Device::Cpu).unwrap();
        let a = v.model.forward(&x).unwrap();
        let b = sparse.forward(&x).unwrap();
        let diff = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff <= 1e-5, "rows {rows}: max diff {diff}");
    }
    assert!(
        sparse.size_bytes() < v.model.size_bytes() / 3,
        "CSR storage is counted"
    );
}

#[test]
fn distilled_student_is_small_and_close_to_the_teacher() {
    let dir = cache();
    for model in ["digits-mlp", "digits-cnn"] {
        let v = prepare_variant(model, "distill", dir.path());
        let control = prepare_variant(model, "distill-control", dir.path());
        let (teacher, student) = (test_accuracy(&v.base.model), test_accuracy(&v.model));
        println!(
            "{model}: teacher {teacher:.2}%  distilled {student:.2}%  control {:.2}%  params {}/{}",
            test_accuracy(&control.model),
            v.model.parameter_count(),
            v.base.model.parameter_count()
        );
        assert!(
            v.model.parameter_count() * 10 <= v.base.model.parameter_count() * 3,
            "at most 30%"
        );
        assert!(
            teacher - student <= 2.0,
            "{model}: {student:.2}% vs {teacher:.2}%"
        );
    }
}

#[test]
fn every_default_technique_builds_a_workload_that_runs() {
    let dir = cache();
    for model in slimbench_models::catalog::DEFAULT_MODELS {
        for technique in slimbench_models::catalog::DEFAULT_TECHNIQUES {
            let spec = WorkloadSpec {
                cell: Cell::new(model, technique.parse().unwrap(), "cpu", 4),
                cache_dir: dir.path().to_path_buf(),
                model_inputs: Default::default(),
            };
            let mut w = match build_workload(&spec) {
                Ok(w) => w,
                Err(ModelError::NotApplicable(why)) => {
                    // The CNN student's 80-wide head fits no 32-block: a documented outcome.
                    assert_eq!(
                        (*model, *technique),
                        ("digits-cnn", "distill+q8_0"),
                        "{why}"
                    );
                    continue;
                }
                Err(e) => panic!("{model}/{technique}: {e}"),
            };
            w.workload.run_batch().unwrap();
            let q = w.workload.quality().unwrap();
            assert_eq!(q.items, 359);
            assert!(!w.report.layers.is_empty());
            if technique.starts_with("prune-unstructured") {
                let notes: Vec<String> = w
                    .report
                    .layers
                    .iter()
                    .filter_map(|l| l.note.clone())
                    .collect();
                assert!(
                    notes.iter().any(|n| n.contains("measured at batch 4")),
                    "{notes:?}"
                );
            }
        }
    }
}
