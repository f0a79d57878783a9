//! A model family written here, outside slimbench, with a plan dimension slimbench has never heard
//! of (the image's side in pixels), registered at run time and run through the harness as it is:
//! the plan flag and config key that the dimension's definition makes, the plan's cells, the
//! worker, the record's key, the run folder's files, `results.csv` and the report. Its own test
//! binary, since registering a family changes the process's catalogue.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Module, Tensor};
use clap::Parser;
use slimbench::analysis::RunData;
use slimbench::cli::plan_args::PlanArgs;
use slimbench::config::parse_config;
use slimbench::export::{export_all, ALL_EXPORTS};
use slimbench::host::HostInfo;
use slimbench::rounds::{combine, RoundEntry};
use slimbench::run_dir::{cell_slug, RunDir};
use slimbench::runner::manifest::{Manifest, RunSpec};
use slimbench::runner::worker::{run_cell, WorkerRequest};
use slimbench::runner::TimingSettings;
use slimbench_models::dimension::Dimension;
use slimbench_models::family::{
    Base, DimensionDefaults, Family, MethodText, PlanDims, StepRef, Variant, WeightTensors,
};
use slimbench_models::layer::{DenseLayer, LayerReport};
use slimbench_models::linears::Linears;
use slimbench_models::technique::TrainingStep;
use slimbench_models::workload::{
    Built, Footprint, Quality, VariantReport, Workload, WorkloadSpec,
};
use slimbench_models::{ModelError, Result};

/// The side of a square image, in pixels: this test's own dimension.
const IMAGE_SIZE: Dimension = Dimension {
    key: "image_size",
    flag: "--image-sizes",
    alias: None,
    config_key: "image_sizes",
    csv_column: "image_size_px",
    name: "image size",
    label: "px",
    slug: "i",
    shape_separator: "@",
    help: "Side of the square images, in pixels (multiples of 8), comma-separated",
    min: 8,
    max: 256,
};

/// Pixels of one patch (8 x 8), the layer's input.
const PATCH: usize = 64;

/// One fully connected layer applied to each 8 x 8 patch of an image: 64 -> 16.
#[derive(Clone)]
struct PatchNet(DenseLayer);

impl Linears for PatchNet {
    fn linear_in_dims(&self) -> Vec<usize> {
        vec![self.0.in_dim]
    }
    fn map_linears(&self, f: &mut dyn FnMut(&DenseLayer) -> Result<DenseLayer>) -> Result<Self> {
        Ok(PatchNet(f(&self.0)?))
    }
    fn layer_reports(
        &self,
        note: &dyn Fn(&DenseLayer) -> Option<String>,
    ) -> Result<Vec<LayerReport>> {
        Ok(vec![self.0.report(note(&self.0))])
    }
}

impl WeightTensors for PatchNet {
    fn to_tensors(&self) -> Result<HashMap<String, Tensor>> {
        Ok(HashMap::from([
            ("w".to_string(), self.0.weight_f32()?),
            ("b".to_string(), self.0.bias.clone()),
        ]))
    }
    fn with_tensors(&self, tensors: &HashMap<String, Tensor>, origin: &str) -> Result<Self> {
        let get = |n: &str| {
            tensors
                .get(n)
                .cloned()
                .ok_or_else(|| ModelError::Invalid(format!("{origin}: no {n}")))
        };
        Ok(PatchNet(DenseLayer::from_f32(
            "patch",
            &get("w")?,
            get("b")?,
        )?))
    }
}

/// The family: one model, `patchnet`, with batch sizes and image sizes as its dimensions.
struct Patches;

static PATCHES: Patches = Patches;

static MODELS: &[(&str, &str)] = &[("patchnet", "a layer over each 8x8 patch (a test's family)")];

/// The images of a cell: `batch` images of `side` x `side` pixels, as rows of patches.
fn images(batch: usize, side: usize, seed: u64) -> Result<Tensor> {
    let patches = batch * (side / 8) * (side / 8);
    let values: Vec<f32> = (0..patches * PATCH)
        .map(|i| (((i as u64 * 2_654_435_761 + seed) % 1000) as f32) / 500.0 - 1.0)
        .collect();
    Ok(Tensor::from_vec(values, (patches, PATCH), &Device::Cpu)?)
}

/// The timed call: the layer over every patch of a batch.
struct PatchWorkload {
    model: PatchNet,
    base: PatchNet,
    input: Tensor,
    batch: usize,
}

impl Workload for PatchWorkload {
    fn batch_size(&self) -> usize {
        self.batch
    }
    fn run_batch(&mut self) -> Result<()> {
        self.model.0.forward(&self.input)?;
        Ok(())
    }
    fn quality(&self) -> Result<Quality> {
        // Agreement of each held-out patch's top output with the uncompressed layer's.
        let held_out = images(4, 32, 99)?;
        let top = |m: &PatchNet| -> Result<Vec<u32>> {
            Ok(m.0.forward(&held_out)?.argmax(1)?.to_vec1::<u32>()?)
        };
        let (ours, base) = (top(&self.model)?, top(&self.base)?);
        let agree = ours.iter().zip(&base).filter(|(a, b)| a == b).count();
        Ok(Quality {
            metric: "agreement".into(),
            value_pct: 100.0 * agree as f64 / ours.len() as f64,
            baseline_pct: 100.0,
            items: ours.len(),
            fidelity: None,
            language: None,
            paired: None,
        })
    }
}

impl Family for Patches {
    type Model = PatchNet;
    type Source = ();

    fn plan_dims(&self) -> PlanDims {
        PlanDims {
            default_batch_sizes: &[1, 4],
            dimensions: &[DimensionDefaults {
                dimension: &IMAGE_SIZE,
                defaults: &[32],
            }],
        }
    }
    fn method(&self) -> MethodText {
        MethodText {
            kind: "patch classifier",
            timed_call: "one batch of images, every 8x8 patch through the layer",
            quality: "agreement of each held-out patch's top class with the uncompressed layer's",
        }
    }
    fn cache_stem(&self, model: &str) -> String {
        model.to_string()
    }
    fn load_base(&self, _model: &str, _cache_dir: &Path) -> Result<Base<PatchNet, ()>> {
        let w: Vec<f32> = (0..16 * PATCH)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 100.0)
            .collect();
        let w = Tensor::from_vec(w, (16, PATCH), &Device::Cpu)?;
        let b = Tensor::zeros(16, candle_core::DType::F32, &Device::Cpu)?;
        Ok(Base {
            model: PatchNet(DenseLayer::from_f32("patch", &w, b)?),
            source: (),
            key: "patchnet base v1".into(),
            outcome: None,
        })
    }
    fn step_params(
        &self,
        _model: &str,
        _step: StepRef<'_>,
        _current: &PatchNet,
    ) -> Result<serde_json::Value> {
        Ok(serde_json::json!({}))
    }
    fn train(
        &self,
        _model: &str,
        step: &TrainingStep,
        _current: &PatchNet,
        _base: &Base<PatchNet, ()>,
    ) -> Result<PatchNet> {
        Err(ModelError::NotApplicable(format!(
            "patchnet trains nothing: {step:?}"
        )))
    }
    fn workload(
        &self,
        spec: &WorkloadSpec,
        _device: &Device,
        variant: Variant<PatchNet, ()>,
    ) -> Result<Built> {
        let side = spec.cell.dim(&IMAGE_SIZE).unwrap_or(32);
        if !side.is_multiple_of(8) {
            return Err(ModelError::NotApplicable(format!(
                "patchnet: an image of {side} px is not whole 8x8 patches"
            )));
        }
        let (model, layers) = variant.final_model(|m| m.layer_reports(&|_| None))?;
        let patches = (side / 8) * (side / 8);
        let report = VariantReport {
            footprint: Footprint {
                parameter_count: model.0.parameter_count(),
                nonzero_parameter_count: model.0.nonzero_parameter_count()?,
                model_bytes: model.0.size_bytes(),
            },
            technique_params: serde_json::json!(variant.params),
            layers,
            flops_per_item: Some((2 * PATCH * 16 * patches) as f64),
        };
        Ok(Built {
            workload: Box::new(PatchWorkload {
                input: images(spec.cell.batch_size, side, 1)?,
                model,
                base: variant.base.model,
                batch: spec.cell.batch_size,
            }),
            report,
        })
    }
}

#[derive(Parser)]
struct PlanFlags {
    #[command(flatten)]
    plan: PlanArgs,
}

/// The settings of a short run: two rounds of a tenth of a second, the estimated meter.
fn spec(cache: &Path) -> RunSpec {
    let mut timing = TimingSettings::quick();
    timing.warmup_iters = 2;
    timing.min_iters = 5;
    timing.min_duration_s = 0.1;
    timing.idle_s = 0.0;
    timing.rounds = 2;
    RunSpec {
        timing,
        energy: slimbench::meter::choose::EnergyChoice::Estimate,
        powercap_root: "/nonexistent".into(),
        cache_dir: cache.to_path_buf(),
        cell_timeout_s: 600.0,
        carbon: slimbench::carbon::resolve(Some("POL"), None, Some(1.2)).unwrap(),
        threads: Some(1),
        order_seed: 1,
        cpu_power: None,
        embodied_kg: None,
        lifetime_years: None,
        max_quality_drop_points: None,
        model_inputs: Default::default(),
    }
}

#[test]
fn a_family_with_an_image_size_dimension_runs_through_plan_worker_csv_and_report() {
    slimbench_models::catalog::register_family(MODELS, &PATCHES).unwrap();

    // The dimension's flag exists because its definition does; its values make the cells.
    let flags = PlanFlags::try_parse_from([
        "run",
        "--models",
        "patchnet",
        "--techniques",
        "fp32,q8_0",
        "--image-sizes",
        "16,32",
        "--batch-sizes",
        "2",
    ])
    .unwrap();
    let plan = flags
        .plan
        .resolve_plan(&Default::default())
        .expect("a plan of patchnet");
    let names: Vec<String> = plan.cells.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        names,
        [
            "patchnet/fp32/cpu/b2/i16",
            "patchnet/fp32/cpu/b2/i32",
            "patchnet/q8_0/cpu/b2/i16",
            "patchnet/q8_0/cpu/b2/i32",
        ]
    );
    assert_eq!(plan.cells[1].batch_label(), "2@32");
    assert_eq!(plan.cells[1].model_label(), "patchnet (32 px)");
    assert_eq!(cell_slug(&plan.cells[1]), "patchnet_fp32_cpu_b2_i32");

    // Its config key and its range come from the same definition.
    let config = parse_config("image_sizes = [8]\n", "bench.toml").unwrap();
    let from_file = PlanFlags::try_parse_from(["run", "--models", "patchnet"])
        .unwrap()
        .plan
        .resolve_plan(&config)
        .unwrap();
    assert!(from_file
        .cells
        .iter()
        .all(|c| c.dim(&IMAGE_SIZE) == Some(8)));
    let too_big =
        PlanFlags::try_parse_from(["run", "--models", "patchnet", "--image-sizes", "512"])
            .unwrap()
            .plan
            .resolve_plan(&Default::default())
            .unwrap_err()
            .to_string();
    assert!(
        too_big.contains("--image-sizes") && too_big.contains("image_sizes"),
        "{too_big}"
    );
    let not_here =
        PlanFlags::try_parse_from(["run", "--models", "digits-mlp", "--image-sizes", "8"])
            .unwrap()
            .plan
            .resolve_plan(&Default::default())
            .unwrap_err()
            .to_string();
    assert!(not_here.contains("add --models patchnet"), "{not_here}");

    // Each cell measured in rounds by the worker, combined as the runner combines them, written
    // to a run folder and read back.
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let run_dir = RunDir::new(dir.path());
    let host = HostInfo::detect();
    let manifest = Manifest {
        schema_version: 1,
        run_id: "patch-run".into(),
        plan: plan.clone(),
        shard: None,
        spec: spec(cache.path()),
        slimbench_version: env!("CARGO_PKG_VERSION").into(),
        commit: "test".into(),
        started_utc: "2026-12-07T00:00:00Z".into(),
    };
    manifest.write(dir.path()).unwrap();
    for cell in &plan.cells {
        let rounds: Vec<RoundEntry> = (1..=2)
            .map(|round| {
                let record = run_cell(&WorkerRequest {
                    run_id: "patch-run".into(),
                    key: cell.clone(),
                    run_dir: dir.path().to_path_buf(),
                    spec: manifest.spec.clone(),
                    host: host.clone(),
                    measure_quality: round == 1,
                });
                assert_eq!(record.status.as_str(), "ok", "{cell}: {:?}", record.error);
                assert_eq!(record.key, *cell, "the record's key is the cell's");
                RoundEntry {
                    round,
                    position: 1,
                    attempt: 0,
                    retries: 0,
                    record,
                }
            })
            .collect();
        let record = combine(&rounds).expect("two ok rounds combine");
        slimbench::results::validity::check_record(&record).unwrap();
        slimbench::results::append_record(&run_dir.results_path(), &record).unwrap();
    }
    let results = std::fs::read_to_string(run_dir.results_path()).unwrap();
    assert!(results.contains("\"image_size\":16"), "{results}");

    let data = RunData::load(dir.path()).unwrap();
    assert_eq!(data.records.len(), 4);
    assert_eq!(data.records[3].key, plan.cells[3], "read back equal");
    export_all(&data, dir.path(), &ALL_EXPORTS).unwrap();

    let csv_text = std::fs::read_to_string(dir.path().join("results.csv")).unwrap();
    let mut csv = csv::Reader::from_reader(csv_text.as_bytes());
    let header = csv.headers().unwrap().clone();
    let column = header
        .iter()
        .position(|h| h == "image_size_px")
        .expect("its CSV column");
    assert!(!header
        .iter()
        .any(|h| h == "seq_len_tokens" || h == "gen_tokens"));
    let sizes: Vec<String> = csv
        .records()
        .map(|r| r.unwrap()[column].to_string())
        .collect();
    assert_eq!(sizes, ["16", "32", "16", "32"]);

    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(
        report.contains("2@32"),
        "the report's shape column:\n{report}"
    );
    assert!(
        report.contains("batch size x image size"),
        "the method names the dimension:\n{report}"
    );
    assert!(
        report.contains("patch classifier"),
        "and the family's method"
    );
}
