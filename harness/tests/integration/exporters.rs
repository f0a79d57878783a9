//! Snapshot tests of every exporter on hand-built results, the HTML report's self-containment, and
//! `slimbench report` re-rendering a folder from its files alone.

use std::collections::BTreeMap;

use predicates::prelude::*;
use slimbench::analysis::RunData;
use slimbench::carbon::resolve;
use slimbench::export::{ExportType, Exporter, ALL_EXPORTS};
use slimbench::host::HostInfo;
use slimbench::meter::{DomainEnergy, DomainKind, EnergyRecord, Source};
use slimbench::plan::Plan;
use slimbench::results::{QualityRecord, Record, Status};
use slimbench::runner::manifest::{Manifest, RunSpec};
use slimbench::runner::TimingSettings;
use slimbench::stats::LatencyStats;
use slimbench_models::workload::Cell;

pub fn key(technique: &str, batch: usize) -> Cell {
    Cell::new("digits-mlp", technique.parse().unwrap(), "cpu", batch)
}

pub fn record(
    technique: &str,
    batch: usize,
    acc: f64,
    p50: f64,
    j_per_item: f64,
    bytes: usize,
) -> Record {
    let host = HostInfo {
        cpu_model: "Test CPU 9000".into(),
        logical_cores: 4,
        physical_cores: Some(2),
        os: "Linux (test)".into(),
        total_memory_bytes: 8 << 30,
    };
    let mut r = Record::empty("run-1", key(technique, batch), host, Status::Ok);
    r.timestamp_utc = "2026-01-02T03:04:05Z".into();
    r.parameter_count = Some(50_826);
    r.nonzero_parameter_count = Some(50_826);
    r.model_bytes = Some(bytes);
    r.quality = Some(QualityRecord {
        metric: "accuracy".into(),
        value_pct: acc,
        baseline_pct: 98.0,
        delta_points: acc - 98.0,
        items: 359,
        fidelity: None,
        language: None,
        paired: None,
    });
    let samples: Vec<f64> = (0..20)
        .map(|i| p50 * (0.95 + 0.005 * f64::from(i)))
        .collect();
    r.latency = LatencyStats::from_samples(&samples);
    r.latency_samples_ms = samples;
    r.window_s = Some(2.0);
    r.throughput_items_per_s = Some(batch as f64 / p50 * 1e3);
    r.peak_rss_bytes = Some(10 << 20);
    let items = 1000.0;
    r.energy = Some(EnergyRecord {
        source: "rapl".into(),
        measured: true,
        method: "RAPL energy counters through powercap sysfs (package-0), wrap-corrected".into(),
        energy_total_j: j_per_item * items,
        energy_per_batch_j: j_per_item * batch as f64,
        energy_per_item_j: j_per_item,
        energy_above_idle_j: Some(j_per_item * items * 0.5),
        energy_above_idle_per_item_j: Some(j_per_item * 0.5),
        idle_power_w: Some(5.0),
        estimate: None,
        energy_low_j: None,
        energy_high_j: None,
        mean_power_w: 10.0,
        peak_power_w: 12.0,
        window_s: 2.0,
        idle_window_s: Some(0.5),
        sampling_hz: 10.0,
        samples: 25,
        dropped_samples: 0,
        intervals: 25,
        unreliable: false,
        domains: vec![DomainEnergy {
            name: "package-0".into(),
            kind: DomainKind::CpuPackage,
            source: Source::Rapl,
            energy_j: j_per_item * items,
            idle_power_w: Some(5.0),
            mean_power_w: 10.0,
            peak_power_w: 12.0,
        }],
        gpu_process_peak_bytes: None,
        gpu_device_peak_bytes: None,
    });
    r
}

pub fn sample_run() -> RunData {
    let carbon = resolve(Some("POL"), None, Some(1.2)).unwrap();
    let mut records = vec![
        record("fp32", 1, 98.0, 0.10, 0.004, 203_304),
        record("q8_0", 1, 97.8, 0.02, 0.001, 55_000),
        record("q4_0", 1, 96.5, 0.03, 0.0012, 30_000),
    ];
    for r in &mut records {
        let e = r.energy.as_ref().unwrap();
        r.carbon = Some(carbon.record(e.energy_per_item_j, &e.source));
    }
    let mut failed = Record::failed(
        "run-1",
        key("q5k", 1),
        records[0].host.clone(),
        "worker killed by signal 9",
    );
    failed.timestamp_utc = "2026-01-02T03:04:06Z".into();
    records.push(failed);
    let plan = Plan {
        cells: records.iter().map(|r| r.key.clone()).collect(),
    };
    RunData {
        manifest: Manifest {
            schema_version: 1,
            run_id: "run-1".into(),
            plan,
            shard: None,
            spec: RunSpec {
                timing: TimingSettings::full(),
                energy: slimbench::meter::choose::EnergyChoice::Auto,
                powercap_root: "/sys/class/powercap".into(),
                cache_dir: "/cache".into(),
                cell_timeout_s: 600.0,
                carbon,
                threads: Some(2),
                order_seed: 7,
                cpu_power: None,
                embodied_kg: None,
                lifetime_years: None,
                max_quality_drop_points: None,
                model_inputs: Default::default(),
            },
            slimbench_version: "0.1.0".into(),
            commit: "abc123".into(),
            started_utc: "2026-01-02T03:04:00Z".into(),
        },
        records,
        traces: BTreeMap::from([(
            "digits-mlp_fp32_cpu_b1".to_string(),
            "t_s,domain,source,watts\n0.1,package-0,rapl,9.5\n0.2,package-0,rapl,10.5\n"
                .to_string(),
        )]),
    }
}

fn export(t: ExportType) -> String {
    let bytes = match t {
        ExportType::Csv => slimbench::export::csv::CsvExporter.export(&sample_run()),
        ExportType::Json => slimbench::export::json::JsonExporter.export(&sample_run()),
        ExportType::Markdown => slimbench::export::markdown::MarkdownExporter.export(&sample_run()),
        ExportType::Html => slimbench::export::html::HtmlExporter.export(&sample_run()),
        ExportType::Emissions => {
            slimbench::export::emissions::EmissionsExporter.export(&sample_run())
        }
    };
    String::from_utf8(bytes.unwrap()).unwrap()
}

#[test]
fn csv_snapshot() {
    insta::assert_snapshot!(export(ExportType::Csv));
}

#[test]
fn json_snapshot() {
    insta::assert_snapshot!(export(ExportType::Json));
}

#[test]
fn markdown_report_snapshot() {
    insta::assert_snapshot!(export(ExportType::Markdown));
}

#[test]
fn codecarbon_emissions_snapshot() {
    let text = export(ExportType::Emissions);
    let header = text.lines().next().unwrap();
    for col in [
        "timestamp",
        "project_name",
        "run_id",
        "duration",
        "emissions",
        "emissions_rate",
        "cpu_power",
        "gpu_power",
        "ram_power",
        "cpu_energy",
        "gpu_energy",
        "ram_energy",
        "energy_consumed",
        "country_name",
        "country_iso_code",
        "region",
        "pue",
    ] {
        assert!(
            header.split(',').any(|h| h == col),
            "CodeCarbon column {col}"
        );
    }
    insta::assert_snapshot!(text);
}

#[test]
fn emissions_are_in_kwh_and_kg() {
    // fp32: 4 J per... 0.004 J/item x 1000 items = 4 J = 1.111e-6 kWh; x 1.2 PUE x 661.9 g/kWh.
    let text = export(ExportType::Emissions);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let row = reader.records().next().unwrap().unwrap();
    let get = |c: &str| {
        row.get(headers.iter().position(|h| h == c).unwrap())
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert!((get("energy_consumed") - 4.0 / 3.6e6).abs() < 1e-15);
    assert!((get("emissions") - 4.0 / 3.6e6 * 1.2 * 661.9 / 1e3).abs() < 1e-15);
}

#[test]
fn html_report_is_self_contained_and_has_every_section() {
    let html = export(ExportType::Html);
    for external in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "url(http",
        "@import",
        "<script",
        "<link",
    ] {
        assert!(
            !html.contains(external),
            "the report must not load {external}"
        );
    }
    for section in [
        "Context",
        "Recommendation",
        "Variants against their baseline",
        "Results",
        "Software Carbon Intensity",
        "Glossary of the techniques in this run",
        "Method and caveats",
        "Charts",
    ] {
        assert!(html.contains(section), "missing section {section}");
    }
    assert!(html.matches("<svg").count() >= 5, "charts inlined as SVG");
    assert!(html.contains("Poland (POL)") && html.contains("661.9"));
    assert!(html.contains("US EPA"), "car factor source");
    insta::assert_snapshot!(html
        .lines()
        .filter(|l| !l.contains("<svg") && !l.starts_with("<figure"))
        .collect::<Vec<_>>()
        .join("\n"));
}

#[test]
fn the_recommendation_follows_the_budget_and_states_its_margin() {
    let md = export(ExportType::Markdown);
    // q8_0 uses least energy within 1 point (75% saved); q4_0 (-1.5 points) is outside the budget.
    // (0.004 - 0.001) J x 1e6 x 365 = 1.095 MJ = 304 Wh; x 1.2 x 661.9 g/kWh = 242 g.
    assert!(
        md.contains("| digits-mlp / cpu / batch 1 | q8_0 | 75% |"),
        "{md}"
    );
    assert!(md.contains("| 304 Wh | 242 g | 972 m |"), "{md}");
    assert!(
        md.contains("digits-mlp / cpu / batch 1: 75% +/- "),
        "the reason states the margin and its uncertainty: {md}"
    );
    // -1.5 points on 359 items is inside the binomial interval (a tie: no item-by-item table to
    // pair, so no McNemar p), yet outside the budget.
    assert!(
        md.contains(
            "| digits-mlp/q4_0/cpu/b1 | variant, quality tie | -1.50 | 2.39 | - | 359 | no |"
        ),
        "{md}"
    );
}

fn recommend(records: &[Record]) -> Vec<slimbench::analysis::recommend::Recommendation> {
    let carbon = resolve(None, None, None).unwrap();
    slimbench::analysis::recommend::recommendations(
        records,
        slimbench::analysis::QualityBudget::default(),
        &carbon,
        slimbench::analysis::Volume::default(),
    )
}

/// Guards issue 17: a control arm is never recommended; variants tied on energy go to the better
/// quality, and quality inside the binomial interval is a tie too, so the smaller model wins.
#[test]
fn the_recommendation_skips_controls_and_breaks_energy_ties_by_quality_then_size() {
    let records = vec![
        record("fp32", 1, 98.05, 0.010, 5.0e-4, 200_000),
        record("distill-control", 1, 98.05, 0.004, 1.5e-4, 50_000),
        record("distill", 1, 98.33, 0.004, 1.77e-4, 50_000),
        record("prune-structured-50", 1, 98.05, 0.004, 1.80e-4, 67_000),
        record("q4_0", 1, 96.0, 0.004, 1.0e-4, 30_000),
    ];
    let recs = recommend(&records);
    assert_eq!(recs.len(), 1);
    let pick = recs[0].pick.as_ref().expect("a variant beats fp32");
    assert_eq!(
        pick.key.technique.to_string(),
        "distill",
        "{}",
        recs[0].reason
    );
    assert_eq!(recs[0].tied_with, ["prune-structured-50"]);
    let q = pick.quality.unwrap();
    assert!(q.is_tie(), "+0.28 points on 359 items is a tie: {q:?}");
    assert!(recs[0]
        .reason
        .contains("Tied on energy with prune-structured-50"));
}

/// Guards issue 17: a saving inside the measurement's uncertainty is no reason to ship a variant.
#[test]
fn a_saving_inside_the_uncertainty_keeps_the_baseline() {
    let records = vec![
        record("fp32", 1, 98.0, 0.010, 1.0e-4, 200_000),
        record("q8_0", 1, 98.0, 0.010, 0.99e-4, 55_000),
    ];
    let recs = recommend(&records);
    assert!(recs[0].pick.is_none(), "{:?}", recs[0]);
    assert!(
        recs[0].reason.starts_with("keep fp32"),
        "{}",
        recs[0].reason
    );
}

/// A variant that uses more energy than the baseline is said to use more, not to save a negative
/// share ("saves -11%"), and a small difference either way is called a tie.
#[test]
fn keeping_the_baseline_says_whether_the_best_variant_uses_more_or_ties() {
    let more = recommend(&[
        record("fp32", 1, 98.0, 0.010, 1.0e-4, 200_000),
        record("q8_0", 1, 98.0, 0.010, 1.5e-4, 55_000),
    ]);
    assert!(more[0].pick.is_none(), "{:?}", more[0]);
    let reason = &more[0].reason;
    assert!(
        reason.starts_with("keep fp32: every variant within the budget uses more energy per item")
            && reason.contains("q8_0, uses 50% +/-"),
        "{reason}"
    );
    assert!(!reason.contains("saves"), "{reason}");
    let tie = recommend(&[
        record("fp32", 1, 98.0, 0.010, 1.0e-4, 200_000),
        record("q8_0", 1, 98.0, 0.010, 1.01e-4, 55_000),
    ]);
    let reason = &tie[0].reason;
    assert!(tie[0].pick.is_none(), "{:?}", tie[0]);
    assert!(
        reason.contains("q8_0, uses 1% +/-") && reason.ends_with("inside the uncertainty (a tie)"),
        "{reason}"
    );
}

/// Issue 34: across engines, the pair with the least energy per item is shipped when the
/// difference clears both figures' uncertainty, and a difference inside it is a tie.
#[test]
fn across_engines_the_least_energy_pair_is_shipped_unless_it_is_a_tie() {
    use slimbench_models::engine::Engine;
    let on_ort = |mut r: Record| {
        r.key = r.key.clone().on_engine(Engine::Ort);
        r
    };
    // slimbench's fp32 and q8_0 beside ort's fp32 and an int8 of the given p50 and energy.
    let two_engines = |int8_p50: f64, int8_j: f64| {
        vec![
            record("fp32", 1, 98.0, 0.010, 5.0e-4, 200_000),
            record("q8_0", 1, 98.0, 0.004, 2.0e-4, 55_000),
            on_ort(record("fp32", 1, 98.0, 0.008, 4.0e-4, 200_000)),
            on_ort(record("int8", 1, 98.0, int8_p50, int8_j, 50_000)),
        ]
    };
    let records = two_engines(0.002, 0.8e-4);
    let recs = recommend(&records);
    assert_eq!(recs.len(), 2, "one recommendation an engine");
    let across = slimbench::analysis::recommend::across_engines(&recs, &records);
    assert_eq!(across.len(), 1);
    let pick = across[0].pick.as_ref().expect("int8 on ort uses 2.5x less");
    assert_eq!(pick.variant_label(), "int8 on ort", "{}", across[0].reason);
    assert!(across[0]
        .reason
        .contains("2.50x less energy per item than q8_0"));
    // Within the uncertainty: a tie, said so.
    let close = two_engines(0.004, 1.99e-4);
    let recs = recommend(&close);
    let across = slimbench::analysis::recommend::across_engines(&recs, &close);
    assert!(across[0].pick.is_none(), "{}", across[0].reason);
    assert!(across[0].reason.starts_with("a tie on energy per item"));
}

#[test]
fn report_rerenders_a_folder_from_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    crate::cli::slimbench(&tmp.path().join("cache"))
        .args([
            "run",
            "--models",
            "digits-mlp",
            "--techniques",
            "fp32,q8_0",
            "--batch-sizes",
            "1",
            "--min-iters",
            "1",
            "--min-duration",
            "0",
            "--region",
            "FRA",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    let run = crate::cli::only_run_dir(&out);
    for t in ALL_EXPORTS {
        std::fs::remove_file(run.join(t.file_name())).unwrap();
    }
    std::fs::remove_dir_all(run.join("charts")).unwrap();
    crate::cli::slimbench(tmp.path())
        .arg("report")
        .arg(&run)
        .assert()
        .success()
        .stdout(predicate::str::contains("report.html"));
    for t in ALL_EXPORTS {
        assert!(run.join(t.file_name()).exists(), "{:?}", t);
    }
    assert!(run
        .join("charts/pareto-energy-digits-mlp-cpu-b1.svg")
        .exists());
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.contains("France (FRA)"),
        "the region survives in run.json"
    );
}

#[test]
fn unknown_region_is_a_usage_error_listing_close_names() {
    let tmp = tempfile::tempdir().unwrap();
    crate::cli::slimbench(tmp.path())
        .args(["run", "--region", "Frnace"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("France"));
}

/// The run's quality budget (`--max-quality-drop`, stored in run.json) is the one the report
/// applies: at 2 points, q4_0's -1.5 is within it.
#[test]
fn the_quality_budget_is_the_runs() {
    let mut data = sample_run();
    data.manifest.spec.max_quality_drop_points = Some(2.0);
    let md = String::from_utf8(
        slimbench::export::markdown::MarkdownExporter
            .export(&data)
            .unwrap(),
    )
    .unwrap();
    assert!(md.contains("| within 2 point |"), "{md}");
    assert!(
        md.contains(
            "| digits-mlp/q4_0/cpu/b1 | variant, quality tie | -1.50 | 2.39 | - | 359 | yes |"
        ),
        "{md}"
    );
}

fn csv_header_of(data: &RunData) -> Vec<String> {
    let bytes = slimbench::export::csv::CsvExporter.export(data).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    text.lines()
        .next()
        .unwrap()
        .split(',')
        .map(String::from)
        .collect()
}

#[test]
fn results_csv_leaves_out_the_columns_the_runs_cells_can_never_fill() {
    // A digits run on the CPU, energy measured by RAPL, not calibrated: no language-model, text,
    // GPU, estimate or calibration columns.
    let data = sample_run();
    let header = csv_header_of(&data);
    for gone in [
        "perplexity",
        "prefill_tokens_per_s",
        "kv_cache_bytes",
        "seq_len_tokens",
        "fidelity_cosine",
        "energy_gpu_j",
        "gpu_device_peak_bytes",
        "energy_estimate_model",
        "energy_per_item_low_j",
        "peak_fraction",
    ] {
        assert!(!header.iter().any(|h| h == gone), "{gone} is written");
    }
    for kept in [
        "model",
        "latency_mean_ms",
        "energy_per_item_j",
        "power_idle_w",
        "speedup_vs_baseline",
        "build_s",
        "error",
    ] {
        assert!(header.iter().any(|h| h == kept), "{kept} is missing");
    }
    // Every row has as many fields as the header.
    let text =
        String::from_utf8(slimbench::export::csv::CsvExporter.export(&data).unwrap()).unwrap();
    let mut reader = ::csv::Reader::from_reader(text.as_bytes());
    for row in reader.records() {
        assert_eq!(row.unwrap().len(), header.len());
    }
    // A language-model cell in the plan (even a failed one) brings its columns back.
    let mut with_llm = sample_run();
    let mut llm = with_llm.records[3].clone();
    llm.key.model = "smollm2".into();
    llm.key.dims.set(&slimbench_models::dimension::SEQ_LEN, 128);
    llm.key
        .dims
        .set(&slimbench_models::dimension::GEN_TOKENS, 64);
    with_llm.records.push(llm);
    let header = csv_header_of(&with_llm);
    for back in [
        "perplexity",
        "prefill_tokens_per_s",
        "seq_len_tokens",
        "gen_tokens",
    ] {
        assert!(header.iter().any(|h| h == back), "{back} is missing");
    }
    assert!(!header.iter().any(|h| h == "fidelity_cosine"));
}
