//! The record schema as users see it: the CSV header, and a record's round trip through JSON.

use slimbench::export::csv::header;

#[test]
fn csv_header_is_stable() {
    insta::assert_snapshot!(header().join("\n"));
}

#[test]
fn every_numeric_column_names_its_unit() {
    let unitless_ok = [
        "schema_version",
        "run_id",
        "timestamp_utc",
        "host_cpu_model",
        "host_logical_cores",
        "host_os",
        "model",
        "technique",
        "technique_params",
        "device",
        "engine",
        "batch_size",
        "status",
        "error",
        "parameter_count",
        "nonzero_parameter_count",
        "layer_formats",
        "quality_metric",
        "iterations",
        "threads",
        "peak_kind",
        "latency_outliers_mild",
        "latency_outliers_severe",
        "energy_source",
        "energy_measured",
        "energy_unreliable",
        "energy_dropped_intervals",
        "energy_intervals",
        "energy_cpu_source",
        "energy_ram_source",
        "energy_gpu_source",
        "energy_method",
        "energy_estimate_model",
        "build_energy_source",
        "build_cached",
        "energy_estimate_vcpus",
        "carbon_intensity_source",
        "carbon_intensity_year",
        "pue",
        // Perplexity is a ratio of probabilities: it has no unit.
        "perplexity",
        "perplexity_err",
        "reference_perplexity",
        "generation_energy_source",
        // Counts of rounds, like iterations.
        "rounds",
        "disturbed_rounds",
        "retried_rounds",
        // Ratios of two latencies: no unit.
        "speedup_vs_baseline",
        "speedup_ci95_lo",
        "speedup_ci95_hi",
    ];
    let units = [
        "_bytes",
        "_pct",
        "_points",
        "_ms",
        "_s",
        "_per_s",
        "_j",
        "_w",
        "_hz",
        "_g",
        "_g_per_kwh",
        "_tokens",
        "_cosine",
        "flops_per_item",
        "_fraction",
        "_nats",
    ];
    for col in header() {
        assert!(
            unitless_ok.contains(&col) || units.iter().any(|u| col.ends_with(u)),
            "column {col} carries no unit"
        );
    }
}
