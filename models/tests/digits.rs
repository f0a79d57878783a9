//! End-to-end checks of the digits MLP: training quality, quantization quality, caching.

use candle_core::quantized::GgmlDType;
use slimbench_models::cache::CacheOutcome;
use slimbench_models::compress::quantize::quantize_mlp;
use slimbench_models::data::digits::digits_split;
use slimbench_models::quality::accuracy_pct;
use slimbench_models::workload::{build_workload, prepare_base, WorkloadSpec};
use slimbench_models::zoo::mlp::{predictions, tensors_of, Mlp};

fn test_accuracy(model: &Mlp) -> f64 {
    let (_, test) = digits_split().unwrap();
    let (x, _) = tensors_of(&test).unwrap();
    accuracy_pct(
        &predictions(&model.forward(&x).unwrap()).unwrap(),
        &test.labels,
    )
}

#[test]
fn mlp_trains_to_95_percent_and_q8_0_stays_within_a_point() {
    let cache = tempfile::tempdir().unwrap();
    let (base, outcome) = prepare_base("digits-mlp", cache.path()).unwrap();
    assert_eq!(outcome, CacheOutcome::Built);
    let fp32 = test_accuracy(&base);
    assert!(fp32 >= 95.0, "fp32 test accuracy {fp32:.2}% < 95%");

    let q8 = quantize_mlp(&base, GgmlDType::Q8_0).unwrap();
    let q8_acc = test_accuracy(&q8.model);
    assert!(
        (fp32 - q8_acc).abs() <= 1.0,
        "q8_0 {q8_acc:.2}% vs fp32 {fp32:.2}%"
    );
    assert!(q8.model.size_bytes() < base.size_bytes() / 3);

    let q4 = quantize_mlp(&base, GgmlDType::Q4_0).unwrap();
    let q4_acc = test_accuracy(&q4.model);
    println!("fp32 {fp32:.2}%  q8_0 {q8_acc:.2}%  q4_0 {q4_acc:.2}%");
    assert!(q4.model.size_bytes() < q8.model.size_bytes());

    let (again, outcome) = prepare_base("digits-mlp", cache.path()).unwrap();
    assert_eq!(outcome, CacheOutcome::Hit, "second prepare reads the cache");
    assert_eq!(test_accuracy(&again), fp32);
}

#[test]
fn workload_reports_quality_against_the_baseline() {
    let cache = tempfile::tempdir().unwrap();
    let spec = WorkloadSpec {
        model: "digits-mlp".into(),
        technique: "q4_0".into(),
        device: "cpu".into(),
        batch_size: 32,
        cache_dir: cache.path().to_path_buf(),
    };
    let mut w = build_workload(&spec).unwrap();
    w.run_batch().unwrap();
    let q = w.quality().unwrap();
    assert_eq!(q.items, 359);
    assert!(q.baseline_pct >= 95.0);
    let f = w.footprint().unwrap();
    assert_eq!(
        f.parameter_count,
        64 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    );
    assert!(w.layers().iter().all(|l| l.format == "q4_0"));
}
