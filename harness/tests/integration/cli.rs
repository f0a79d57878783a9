//! The `slimbench` binary end to end, through assert_cmd.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

use crate::fake_powercap::{zone, MAX};

pub fn slimbench(cache: &Path) -> Command {
    let mut cmd = Command::cargo_bin("slimbench").unwrap();
    cmd.env("SLIMBENCH_CACHE", cache)
        .env_remove("SLIMBENCH_POWERCAP_ROOT");
    cmd
}

pub fn only_run_dir(out: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "one run folder: {dirs:?}");
    dirs[0].clone()
}

/// The timing flags of the integration runs that time real cells: one thread, one warm-up
/// batch, at least 3 timed iterations over at least 0.1 s, and no round measured again for
/// disturbance (the tests run side by side, each disturbing the others).
pub const SHORT_TIMING: [&str; 10] = [
    "--disturbed-retries",
    "0",
    "--threads",
    "1",
    "--warmup",
    "1",
    "--min-iters",
    "3",
    "--min-duration",
    "0.1",
];

/// A run's `results.csv`: its rows, each cell read by its column's name.
pub struct ResultsCsv {
    headers: csv::StringRecord,
    /// The rows, one a cell.
    pub rows: Vec<csv::StringRecord>,
}

impl ResultsCsv {
    /// Reads `run_dir/results.csv`.
    pub fn read(run_dir: &Path) -> Self {
        let mut reader = csv::Reader::from_path(run_dir.join("results.csv")).unwrap();
        let headers = reader.headers().unwrap().clone();
        let rows = reader.records().map(|r| r.unwrap()).collect();
        ResultsCsv { headers, rows }
    }

    /// True when the file has column `name`.
    pub fn has(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h == name)
    }

    /// The cell of `row` in column `name`.
    pub fn get(&self, row: &csv::StringRecord, name: &str) -> String {
        let idx = self.headers.iter().position(|h| h == name).unwrap();
        row.get(idx).unwrap().to_string()
    }
}

fn csv_rows(run_dir: &Path) -> Vec<csv::StringRecord> {
    ResultsCsv::read(run_dir).rows
}

fn column(run_dir: &Path, name: &str) -> Vec<String> {
    let csv = ResultsCsv::read(run_dir);
    csv.rows.iter().map(|r| csv.get(r, name)).collect()
}

#[test]
fn quick_run_writes_one_row_per_cell_and_labels_estimated_energy() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("reports");
    slimbench(&tmp.path().join("cache"))
        .args([
            "run",
            "--quick",
            "--models",
            "digits-mlp",
            "--techniques",
            "fp32,q8_0,q4_0",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("report:"))
        .stdout(predicate::str::contains("estimated-"))
        .stdout(predicate::str::contains("ESTIMATED"))
        .stderr(predicate::str::contains("warning: RAPL unavailable"));
    let run = only_run_dir(&out);
    let rows = csv_rows(&run);
    assert_eq!(rows.len(), 6, "3 techniques x 2 batch sizes");
    assert!(column(&run, "status").iter().all(|s| s == "ok"));
    assert!(column(&run, "energy_source")
        .iter()
        .all(|s| s == "estimated-vcpu" || s == "estimated-tdp"));
    assert!(column(&run, "energy_measured").iter().all(|s| s == "false"));
    let jsonl = std::fs::read_to_string(run.join("results.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 6);
    let acc: Vec<f64> = column(&run, "quality_pct")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(acc.iter().all(|a| *a >= 95.0), "{acc:?}");
    for t in ["fp32", "q8_0", "q4_0"] {
        for b in [1, 32] {
            assert!(run
                .join(format!("traces/digits-mlp_{t}_cpu_b{b}.csv"))
                .exists());
        }
    }
}

#[test]
fn unknown_technique_exits_2_listing_the_valid_names() {
    let tmp = tempfile::tempdir().unwrap();
    slimbench(tmp.path())
        .args(["run", "--techniques", "fp32,q3_z", "--out"])
        .arg(tmp.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown technique \"q3_z\""))
        .stderr(predicate::str::contains("q8_0"));
}

#[test]
fn unknown_model_and_device_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    slimbench(tmp.path())
        .args(["run", "--models", "resnet"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("digits-mlp"));
    slimbench(tmp.path())
        .args(["run", "--devices", "cuda:0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("built without the cuda feature"));
}

/// Whether this CPU runs the 256-bit VNNI kernels (AVX-VNNI, or AVX-512 VNNI standing in), and
/// the kernel name the records then carry.
fn vnni256_here() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if !(has!("avx2") && has!("fma") && has!("f16c")) {
            return None;
        }
        if has!("avxvnni") {
            return Some("avx-vnni");
        }
        if has!("avx512f") && has!("avx512vl") && has!("avx512vnni") {
            return Some("avx-vnni-evex");
        }
    }
    None
}

#[test]
fn the_avx_vnni_choice_runs_and_records_its_path_or_exits_2_where_the_cpu_cannot() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    let mut cmd = slimbench(tmp.path());
    cmd.env("SLIMBENCH_KERNELS", "avx-vnni")
        .args([
            "run",
            "--quick",
            "--models",
            "digits-mlp",
            "--techniques",
            "fp32,int8,q4_0",
            "--batch-sizes",
            "1",
            "--out",
        ])
        .arg(&out);
    let Some(kernel) = vnni256_here() else {
        eprintln!("this CPU has neither AVX-VNNI nor AVX-512 VNNI: checking the refusal only");
        cmd.assert()
            .code(2)
            .stderr(predicate::str::contains("SLIMBENCH_KERNELS=avx-vnni"));
        return;
    };
    cmd.assert().success();
    let run = only_run_dir(&out);
    assert!(column(&run, "status").iter().all(|s| s == "ok"));
    let jsonl = std::fs::read_to_string(run.join("results.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let params = |technique: &str| {
        let found: Vec<&serde_json::Value> = records
            .iter()
            .filter(|r| r["technique"] == technique)
            .collect();
        assert_eq!(found.len(), 1, "{technique}");
        found[0]["technique_params"].clone()
    };
    let int8 = params("int8");
    assert_eq!(int8["steps"][0]["kernel"], kernel, "{int8}");
    // Every figure of the integer kernels names its path; fp32 runs none of them.
    assert_eq!(int8["kernel"], kernel, "{int8}");
    let q4_0 = params("q4_0");
    assert_eq!(q4_0["kernel"], kernel, "{q4_0}");
    assert!(params("fp32").get("kernel").is_none());
}

#[test]
fn an_unknown_kernel_choice_exits_2_naming_the_variable_and_the_choices() {
    let tmp = tempfile::tempdir().unwrap();
    slimbench(tmp.path())
        .env("SLIMBENCH_KERNELS", "avx3")
        .args([
            "run",
            "--quick",
            "--models",
            "digits-mlp",
            "--techniques",
            "fp32",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("SLIMBENCH_KERNELS=\"avx3\""))
        .stderr(predicate::str::contains("`avx-vnni`, `avx2` or `portable`"));
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().next().is_none(),
        "nothing written"
    );
}

#[test]
fn asking_for_rapl_without_a_tree_exits_2_with_what_was_found() {
    let tmp = tempfile::tempdir().unwrap();
    slimbench(tmp.path())
        .args(["run", "--energy", "rapl", "--powercap-root"])
        .arg(tmp.path().join("absent"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--energy rapl"))
        .stderr(predicate::str::contains("no powercap tree at"));
}

#[test]
fn rapl_run_on_a_fake_tree_is_labelled_measured() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("powercap");
    zone(&tree, "intel-rapl:0", "package-0", 1000, MAX);
    let out = tmp.path().join("reports");
    slimbench(&tmp.path().join("cache"))
        .args([
            "run",
            "--models",
            "digits-mlp",
            "--techniques",
            "fp32",
            "--batch-sizes",
            "1",
            "--min-iters",
            "5",
            "--min-duration",
            "0.1",
            "--energy",
            "rapl",
            "--out",
        ])
        .arg(&out)
        .arg("--powercap-root")
        .arg(&tree)
        .assert()
        .success()
        .stdout(predicate::str::contains("measured (rapl)"));
    let run = only_run_dir(&out);
    assert_eq!(column(&run, "energy_source"), ["rapl"]);
    assert_eq!(column(&run, "energy_cpu_source"), ["rapl"]);
    assert_eq!(column(&run, "energy_measured"), ["true"]);
}

#[test]
fn list_names_models_techniques_and_why_each_energy_source_is_unavailable() {
    let tmp = tempfile::tempdir().unwrap();
    slimbench(tmp.path())
        .args(["list", "--powercap-root"])
        .arg(tmp.path().join("absent"))
        .assert()
        .success()
        .stdout(predicate::str::contains("digits-mlp"))
        .stdout(predicate::str::contains("q4k"))
        .stdout(predicate::str::contains(format!(
            "{:<28} unavailable: no powercap tree at",
            "rapl"
        )))
        .stdout(predicate::str::is_match(r"estimated-(vcpu|tdp) +available").unwrap());
}

#[test]
fn run_help_states_the_default_plan_that_a_bare_run_plans() {
    use slimbench::cli::plan_args::{defaults_by_model, join_numbers};
    use slimbench_models::catalog::{plan_dims, DEFAULT_MODELS, DEFAULT_TECHNIQUES};
    let tmp = tempfile::tempdir().unwrap();
    let help = slimbench(&tmp.path().join("cache"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for expected in [
        format!("[default: {}]", DEFAULT_MODELS.join(",")),
        format!("[default: {}]", DEFAULT_TECHNIQUES.join(",")),
        format!(
            "[default: each model's own: {}]",
            defaults_by_model(|d| Some(join_numbers(d.default_batch_sizes)))
        ),
        "digits-mlp, digits-cnn 1,32; minilm 1,8".to_string(),
    ] {
        assert!(
            help.contains(&expected),
            "run --help lacks {expected:?}:\n{help}"
        );
    }
    assert!(
        DEFAULT_TECHNIQUES.contains(&"int8"),
        "int8 is in the default suite"
    );
    // `plan` with no flag resolves the same defaults as `run` with no flag.
    let cells: usize = DEFAULT_MODELS
        .iter()
        .map(|m| DEFAULT_TECHNIQUES.len() * plan_dims(m).unwrap().default_batch_sizes.len())
        .sum();
    slimbench(&tmp.path().join("cache"))
        .arg("plan")
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "{cells} cells in 1 share(s)"
        )));
}

#[test]
fn a_run_without_minilm_ends_with_the_command_that_fetches_it() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let run = |out: &str| {
        let out = slimbench(&tmp.path().join("cache"))
            .env("SLIMBENCH_MODELS", &models)
            .args([
                "run",
                "--quick",
                "--min-duration",
                "0",
                "--models",
                "digits-mlp",
                "--techniques",
                "fp32",
                "--batch-sizes",
                "1",
                "--out",
            ])
            .arg(tmp.path().join(out))
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let stdout = run("first");
    let last: Vec<&str> = stdout.lines().rev().take(3).collect();
    assert!(
        last.iter()
            .any(|l| l.contains("cargo run --release -- fetch minilm")),
        "the last lines give the fetch command:\n{stdout}"
    );
    let dir = models.join("minilm");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::write(dir.join(f), b"{}").unwrap();
    }
    let stdout = run("second");
    assert!(
        !stdout.contains("fetch minilm"),
        "no hint once fetched:\n{stdout}"
    );
}

/// Issue 30: `--cpu-power` sets the per-vCPU coefficients; the record names the model and them;
/// results.json and results.csv agree on every energy figure; no idle or above-idle figure exists
/// in estimate mode; each cell's CPU energy lies between all vCPUs idle and all busy.
#[test]
fn the_estimate_names_its_coefficients_and_json_and_csv_agree_on_every_energy_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("reports");
    slimbench(&tmp.path().join("cache"))
        .arg("run")
        .args(SHORT_TIMING)
        .args([
            "--models",
            "digits-mlp",
            "--techniques",
            "fp32,int8",
            "--batch-sizes",
            "32",
            "--energy",
            "estimate",
            "--cpu-power",
            "1:3",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    let run = only_run_dir(&out);
    let csv = ResultsCsv::read(&run);
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(csv.rows.len(), 2);
    let text = std::fs::read_to_string(run.join("results.json")).unwrap();
    for word in ["idle", "above_idle"] {
        assert!(!text.contains(word), "results.json holds {word}");
    }
    for row in &csv.rows {
        let technique = csv.get(row, "technique");
        let j = json
            .iter()
            .find(|r| r["technique"] == technique.as_str())
            .unwrap();
        let e = &j["energy"];
        assert_eq!(csv.get(row, "energy_source"), "estimated-vcpu");
        assert_eq!(e["estimate"]["model"], "given-vcpu");
        assert_eq!(csv.get(row, "energy_estimate_vcpu_min_w"), "1");
        assert_eq!(csv.get(row, "energy_estimate_vcpu_max_w"), "3");
        for (column, value) in [
            ("energy_total_j", &e["energy_total_j"]),
            ("energy_per_item_j", &e["energy_per_item_j"]),
            ("energy_low_j", &e["energy_low_j"]),
            ("energy_high_j", &e["energy_high_j"]),
            ("power_mean_w", &e["mean_power_w"]),
            ("energy_window_s", &e["window_s"]),
        ] {
            let (a, b): (f64, f64) = (
                csv.get(row, column).parse().unwrap(),
                value.as_f64().unwrap(),
            );
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1e-12),
                "{column}: csv {a} json {b}"
            );
        }
        for column in [
            "power_idle_w",
            "energy_above_idle_j",
            "energy_above_idle_per_item_j",
        ] {
            // An estimate has no idle draw: a run estimated throughout has no such column.
            assert!(!csv.has(column), "{column} in estimate mode");
        }
        let vcpus: f64 = csv.get(row, "energy_estimate_vcpus").parse().unwrap();
        let window: f64 = csv.get(row, "energy_window_s").parse().unwrap();
        let cpu_j: f64 = csv.get(row, "energy_cpu_j").parse().unwrap();
        assert!(
            cpu_j >= vcpus * 1.0 * window * 0.999 && cpu_j <= vcpus * 3.0 * window * 1.001,
            "CPU energy {cpu_j} J outside {vcpus} vCPUs x 1-3 W x {window} s"
        );
        let (lo, hi): (f64, f64) = (
            csv.get(row, "energy_per_item_low_j").parse().unwrap(),
            csv.get(row, "energy_per_item_high_j").parse().unwrap(),
        );
        let central: f64 = csv.get(row, "energy_per_item_j").parse().unwrap();
        assert!(
            lo < central && central < hi,
            "{lo} {central} {hi}: RAM's band only"
        );
    }
}

/// Issue 30: a distillation built by a run is timed and metered and its cost recorded with the
/// record; a second run that reads it from the cache reports the same cost, marked cached.
#[test]
fn a_build_is_metered_once_and_its_cost_reused_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let build_of = |out: &Path| {
        slimbench(&cache)
            .arg("run")
            .args(SHORT_TIMING)
            .args([
                "--models",
                "digits-mlp",
                "--techniques",
                "fp32,distill",
                "--batch-sizes",
                "32",
                "--rounds",
                "1",
                "--out",
            ])
            .arg(out)
            .assert()
            .success();
        let run = only_run_dir(out);
        let csv = ResultsCsv::read(&run);
        let row = csv
            .rows
            .iter()
            .find(|r| csv.get(r, "technique") == "distill")
            .unwrap()
            .clone();
        (
            csv.get(&row, "build_s"),
            csv.get(&row, "build_energy_j"),
            csv.get(&row, "build_energy_source"),
            csv.get(&row, "energy_source"),
        )
    };
    let first = build_of(&tmp.path().join("first"));
    let second = build_of(&tmp.path().join("second"));
    let joules: f64 = first.1.parse().unwrap();
    assert!(joules > 0.0, "the distillation's energy: {first:?}");
    assert!(first.0.parse::<f64>().unwrap() > 0.0);
    // Metered with the cell's own meter and label.
    assert_eq!(first.2, first.3);
    // Read from the cache: the cost recorded when it was built, not a new one.
    assert_eq!(
        (&first.0, &first.1, &first.2),
        (&second.0, &second.1, &second.2)
    );
    let sidecars = std::fs::read_dir(&cache)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".build.json")
        })
        .count();
    assert!(
        sidecars >= 2,
        "the base and the student each keep their cost"
    );
}
