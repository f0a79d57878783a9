//! The text-model workload: a BERT variant prepared from a technique chain (training steps
//! cached), timed on a fixed batch of emails at a fixed sequence length, and judged by fidelity
//! (cosine of its sentence embeddings to the fp32 model's) and spam accuracy of an fp32-trained
//! logistic-regression probe on its embeddings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::cache::{entry_path, load_or_build, sha256_hex, CacheOutcome};
use crate::catalog::{parse_technique, Step};
use crate::data::emails::{emails_path, load_split, EmailSplit};
use crate::error::{ModelError, Result};
use crate::layer::LayerReport;
use crate::text::bert::{row_cosines, Bert};
use crate::text::compress::{
    cast_bert, distill_bert, prune_bert_structured, quantize_bert, quantize_embeddings,
    DistillConfig,
};
use crate::text::files::{models_dir, ModelFiles};
use crate::text::probe::Probe;
use crate::text::tokenize::{Padding, TextTokenizer};
use crate::workload::{Footprint, Quality, Workload, WorkloadSpec};

/// Catalogue name of all-MiniLM-L6-v2.
pub const MINILM: &str = "minilm";
/// Prefix of a model given as a folder (`--model-dir DIR` becomes `bert@DIR`).
pub const DIR_PREFIX: &str = "bert@";
/// Sequence length when a plan names none.
pub const DEFAULT_SEQ_LEN: usize = 128;
/// Tokens per text in the quality tasks (fixed, whatever the timed length).
pub const QUALITY_SEQ_LEN: usize = 128;
/// Texts per forward pass while computing quality.
const QUALITY_BATCH: usize = 16;

/// True for the text models: MiniLM and `bert@DIR` folders.
pub fn is_text_model(model: &str) -> bool {
    model == MINILM || model.starts_with(DIR_PREFIX)
}

/// The files of a text model, checked.
pub fn model_files(model: &str) -> Result<ModelFiles> {
    if model == MINILM {
        return ModelFiles::locate(
            &models_dir().join(MINILM),
            "run `slimbench fetch minilm` (or set SLIMBENCH_MODELS to the folder that holds minilm/)",
        );
    }
    match model.strip_prefix(DIR_PREFIX) {
        Some(dir) => ModelFiles::locate(
            Path::new(dir),
            "--model-dir needs config.json, tokenizer.json and model.safetensors in one folder",
        ),
        None => Err(ModelError::Invalid(format!(
            "{model:?} is not a text model"
        ))),
    }
}

/// The SpamAssassin split (from the models cache).
pub fn email_split() -> Result<EmailSplit> {
    load_split(&emails_path(&models_dir()))
}

/// A loaded text model with everything that identifies it for the cache.
pub struct TextBase {
    /// The files it came from.
    pub files: ModelFiles,
    /// The fp32 model.
    pub bert: Bert,
    /// Cache key material: the weights' and config's sha256.
    pub key: String,
}

/// Loads a text model's fp32 weights.
pub fn load_base(model: &str) -> Result<TextBase> {
    let files = model_files(model)?;
    let config = files.config()?;
    let bytes = std::fs::read(&files.weights).map_err(|e| ModelError::io(&files.weights, e))?;
    let weights_sha = sha256_hex(&bytes);
    // One read of the weights serves both the cache key and the tensors.
    let tensors = crate::text::files::parse_safetensors(&bytes, &files.weights)?;
    let bert = Bert::from_tensors(&config, &tensors, &files.weights.display().to_string())?;
    let config_text =
        std::fs::read_to_string(&files.config).map_err(|e| ModelError::io(&files.config, e))?;
    let key = serde_json::json!({
        "weights_sha256": weights_sha,
        "config_sha256": sha256_hex(config_text.as_bytes()),
        "format": 1,
    })
    .to_string();
    Ok(TextBase { files, bert, key })
}

fn cache_stem(model: &str) -> String {
    if model == MINILM {
        return MINILM.into();
    }
    let name = Path::new(model.trim_start_matches(DIR_PREFIX))
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "bert".into());
    format!(
        "bert-{}",
        name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

/// A text variant after its training steps, before any quantization or cast.
pub struct PreparedText {
    /// The fp32 model.
    pub base: TextBase,
    /// After the chain's training steps.
    pub bert: Bert,
    /// The quantization or cast at the end of the chain, if any.
    pub post: Option<Step>,
    /// Each step with its parameters.
    pub params: Vec<serde_json::Value>,
    /// Whether each training step came from the cache.
    pub outcomes: Vec<CacheOutcome>,
    /// Cache key material of the variant after its training steps.
    pub key: String,
}

fn step_params(step: &Step, depth: usize) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(step).map_err(|e| ModelError::Invalid(e.to_string()))?;
    let extra = match step {
        Step::PruneStructured { .. } => serde_json::json!({
            "removes": "attention heads and feed-forward neurons, the same ratio in every layer (at least one kept)",
            "importance": "weight norm of everything that reads or writes the head or neuron",
            "finetune": "none",
        }),
        Step::Distill { .. } => serde_json::json!({ "student": DistillConfig::default_for(depth) }),
        Step::Quantize { format, embeddings } => serde_json::json!({
            "block_size": crate::compress::quantize::format_by_name(format).map(|f| f.block_size()),
            "scope": if *embeddings {
                "every Linear and the token embeddings (dequantized to f32 at load for the lookup); position and type embeddings and layer norms f32"
            } else {
                "every Linear (fused query/key/value, attention output, intermediate, output); embeddings and layer norms f32"
            },
            "fallback": "per layer to the nearest block-32 format with as many bits or more, else f32",
        }),
        Step::Cast { .. } => serde_json::json!({
            "scope": "every Linear; embeddings and layer norms f32",
        }),
        Step::PruneUnstructured { .. } => serde_json::json!({}),
        Step::Int8 => crate::workload::int8_params(),
    };
    if let (Some(obj), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        obj.extend(more.clone());
    }
    Ok(v)
}

fn apply_step(step: &Step, bert: &Bert, base: &TextBase, model: &str) -> Result<Bert> {
    match step {
        Step::PruneStructured { ratio, norm } => prune_bert_structured(bert, *ratio, *norm),
        Step::Distill { control: false } => {
            let split = email_split()?;
            let texts: Vec<&str> = split.distill.iter().map(|e| e.text.as_str()).collect();
            let mut tokenizer = TextTokenizer::load(&base.files.tokenizer)?;
            let dc = DistillConfig::default_for(bert.layers.len());
            distill_bert(bert, &mut tokenizer, &texts, &dc, model)
        }
        Step::Distill { control: true } => Err(ModelError::NotApplicable(
            "distill-control trains the student on labels alone; a sentence encoder has no \
             labelled task to train it on (use distill)"
                .into(),
        )),
        Step::PruneUnstructured { .. } => Err(ModelError::NotApplicable(
            "unstructured pruning of a text model needs a masked fine-tune that slimbench's text \
             trainer does not run; use prune-structured-R (attention heads and FFN neurons)"
                .into(),
        )),
        Step::Quantize { .. } | Step::Cast { .. } | Step::Int8 => Err(ModelError::Invalid(
            "a quantization or cast is not a training step".into(),
        )),
    }
}

/// Prepares a text variant: the fp32 model, then each training step of the chain, each cached.
pub fn prepare_text_variant(
    model: &str,
    technique: &str,
    cache_dir: &Path,
) -> Result<PreparedText> {
    let steps = parse_technique(technique)?;
    let base = load_base(model)?;
    let mut key = base.key.clone();
    let mut bert = base.bert.clone();
    let mut params = Vec::new();
    let mut outcomes = Vec::new();
    let mut post = None;
    for step in &steps {
        let p = step_params(step, bert.layers.len())?;
        params.push(p.clone());
        if step.is_post_training() {
            post = Some(step.clone());
            continue;
        }
        key = format!("{key}|{p}");
        let path = entry_path(cache_dir, &format!("{}-variant", cache_stem(model)), &key);
        let (tensors, outcome) = load_or_build(&path, || {
            apply_step(step, &bert, &base, model)?.to_tensors()
        })?;
        bert = Bert::from_tensors(&base.bert.config, &tensors, &path.display().to_string())?;
        outcomes.push(outcome);
    }
    Ok(PreparedText {
        base,
        bert,
        post,
        params,
        outcomes,
        key,
    })
}

/// Sentence embeddings of `texts` at the quality sequence length, as rows (on the CPU, computed on
/// the model's device).
pub fn embed_texts(bert: &Bert, tokenizer: &mut TextTokenizer, texts: &[&str]) -> Result<Tensor> {
    let mut parts = Vec::new();
    let device = bert.device();
    for chunk in texts.chunks(QUALITY_BATCH) {
        let input = tokenizer
            .encode(chunk, Padding::Longest(QUALITY_SEQ_LEN))?
            .to_device(&device)?;
        parts.push(bert.embed(&input, false)?.to_device(&Device::Cpu)?);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

fn rows_of(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(t.to_vec2::<f32>()?)
}

/// The fp32 reference of the quality tasks: test embeddings and the spam probe, cached.
struct Reference {
    test_embeddings: Tensor,
    probe: Probe,
    accuracy_pct: f64,
}

fn reference(
    prepared: &PreparedText,
    split: &EmailSplit,
    tok: &mut TextTokenizer,
    cache_dir: &Path,
    model: &str,
) -> Result<Reference> {
    let key = format!("{}|emails {}|reference 1", prepared.base.key, split.sha256);
    let path = entry_path(cache_dir, &format!("{}-reference", cache_stem(model)), &key);
    let (tensors, _) = load_or_build(&path, || {
        let bert = &prepared.base.bert;
        let train: Vec<&str> = split.probe_train.iter().map(|e| e.text.as_str()).collect();
        let test: Vec<&str> = split.test.iter().map(|e| e.text.as_str()).collect();
        let train_emb = embed_texts(bert, tok, &train)?;
        let test_emb = embed_texts(bert, tok, &test)?;
        let labels: Vec<bool> = split.probe_train.iter().map(|e| e.spam).collect();
        let probe = Probe::train(&rows_of(&train_emb)?, &labels);
        let w: Vec<f32> = probe.weights.iter().map(|&w| w as f32).collect();
        let n = w.len();
        Ok(HashMap::from([
            ("test_embeddings".to_string(), test_emb),
            (
                "probe_weights".to_string(),
                Tensor::from_vec(w, n, &Device::Cpu)?,
            ),
            (
                "probe_bias".to_string(),
                Tensor::new(&[probe.bias as f32], &Device::Cpu)?,
            ),
        ]))
    })?;
    let get = |n: &str| {
        tensors.get(n).cloned().ok_or_else(|| ModelError::Data {
            source_name: path.display().to_string(),
            message: format!("missing {n}"),
        })
    };
    let test_embeddings = get("test_embeddings")?;
    let probe = Probe {
        weights: get("probe_weights")?
            .to_vec1::<f32>()?
            .into_iter()
            .map(f64::from)
            .collect(),
        bias: f64::from(get("probe_bias")?.to_vec1::<f32>()?[0]),
    };
    let labels: Vec<bool> = split.test.iter().map(|e| e.spam).collect();
    let accuracy_pct = probe.accuracy_pct(&rows_of(&test_embeddings)?, &labels);
    Ok(Reference {
        test_embeddings,
        probe,
        accuracy_pct,
    })
}

/// Fidelity and spam accuracy of `variant` against the fp32 reference.
fn text_quality(
    variant: &Bert,
    prepared: &PreparedText,
    variant_key: &str,
    split: &EmailSplit,
    tok: &mut TextTokenizer,
    cache_dir: &Path,
    model: &str,
) -> Result<Quality> {
    let reference = reference(prepared, split, tok, cache_dir, model)?;
    let key = format!("{variant_key}|emails {}|quality 1", split.sha256);
    let path = entry_path(cache_dir, &format!("{}-quality", cache_stem(model)), &key);
    let (tensors, _) = load_or_build(&path, || {
        let test: Vec<&str> = split.test.iter().map(|e| e.text.as_str()).collect();
        Ok(HashMap::from([(
            "test_embeddings".to_string(),
            embed_texts(variant, tok, &test)?,
        )]))
    })?;
    let emb = tensors
        .get("test_embeddings")
        .ok_or_else(|| ModelError::Data {
            source_name: path.display().to_string(),
            message: "missing test_embeddings".into(),
        })?;
    let cosines = row_cosines(emb, &reference.test_embeddings)?;
    let fidelity = cosines.iter().map(|&c| f64::from(c)).sum::<f64>() / cosines.len().max(1) as f64;
    let labels: Vec<bool> = split.test.iter().map(|e| e.spam).collect();
    Ok(Quality {
        metric: "spam_accuracy".into(),
        value_pct: reference.probe.accuracy_pct(&rows_of(emb)?, &labels),
        baseline_pct: reference.accuracy_pct,
        items: labels.len(),
        fidelity: Some(fidelity),
    })
}

/// Builds the workload of one text cell.
pub fn build_text_workload(spec: &WorkloadSpec) -> Result<Box<dyn Workload>> {
    let seq_len = spec.seq_len.unwrap_or(DEFAULT_SEQ_LEN);
    let prepared = prepare_text_variant(&spec.model, &spec.technique, &spec.cache_dir)?;
    let (bert, layers, variant_key) = match &prepared.post {
        Some(step) => {
            let (b, l) = if matches!(step, Step::Int8) {
                crate::text::compress::int8_bert(&prepared.bert)?
            } else if let Some(format) = step.quant_format() {
                let (b, mut l) = quantize_bert(&prepared.bert, format)?;
                if matches!(
                    step,
                    Step::Quantize {
                        embeddings: true,
                        ..
                    }
                ) {
                    let (b, emb) = quantize_embeddings(&b, format)?;
                    l[0] = emb;
                    (b, l)
                } else {
                    (b, l)
                }
            } else if let Some(dtype) = step.cast_dtype() {
                cast_bert(&prepared.bert, dtype)?
            } else {
                return Err(ModelError::Invalid(format!(
                    "unknown post-training step {step:?}"
                )));
            };
            (
                b,
                l,
                format!(
                    "{}|{}",
                    prepared.key,
                    serde_json::to_string(step).unwrap_or_default()
                ),
            )
        }
        None => {
            let l = prepared.bert.layer_reports(|_| None);
            (prepared.bert.clone(), l, prepared.key.clone())
        }
    };
    let positions = bert.position_embeddings.dim(0)?;
    if seq_len > positions {
        return Err(ModelError::NotApplicable(format!(
            "sequence length {seq_len} exceeds the model's {positions} position embeddings"
        )));
    }
    let device = crate::device::candle_device(&spec.device)?;
    let bert = bert.to_device(&device)?;
    let split = email_split()?;
    let texts: Vec<&str> = (0..spec.batch_size)
        .map(|i| split.test[i % split.test.len()].text.as_str())
        .collect();
    let mut tokenizer = TextTokenizer::load(&prepared.base.files.tokenizer)?;
    let batch = tokenizer
        .encode(&texts, Padding::Fixed(seq_len))?
        .to_device(&device)?;
    // The corpus and the tokenizer, read once, serve the timed batch and the quality tasks.
    let quality = text_quality(
        &bert,
        &prepared,
        &variant_key,
        &split,
        &mut tokenizer,
        &spec.cache_dir,
        &spec.model,
    )?;
    let model_bytes = layers.iter().map(|l| l.bytes).sum();
    let footprint = Footprint {
        parameter_count: bert.parameter_count(),
        nonzero_parameter_count: bert.nonzero_parameter_count()?,
        model_bytes,
    };
    Ok(Box::new(TextWorkload {
        bert,
        device,
        batch,
        batch_size: spec.batch_size,
        quality,
        footprint,
        params: serde_json::json!({
            "steps": prepared.params,
            "seq_len": seq_len,
            "quality": {
                "texts": split.test.len(),
                "seq_len": QUALITY_SEQ_LEN,
                "fidelity": "mean cosine of mean-pooled, L2-normalised embeddings to the fp32 model's",
                "spam_probe": "logistic regression on fp32 embeddings of 512 emails, evaluated on the variant's",
            },
            "model_files": prepared.base.files.dir,
        }),
        layers,
    }))
}

/// A prepared text variant with its fixed timing batch and its quality, computed once.
struct TextWorkload {
    bert: Bert,
    device: Device,
    batch: crate::text::tokenize::Encoded,
    batch_size: usize,
    quality: Quality,
    footprint: Footprint,
    params: serde_json::Value,
    layers: Vec<LayerReport>,
}

impl Workload for TextWorkload {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn run_batch(&mut self) -> Result<()> {
        let out = self.bert.embed(&self.batch, false)?;
        // CUDA runs asynchronously: the batch is done only when the device says so.
        self.device.synchronize()?;
        std::hint::black_box(out);
        Ok(())
    }

    fn quality(&self) -> Result<Quality> {
        Ok(self.quality.clone())
    }

    fn footprint(&self) -> Result<Footprint> {
        Ok(self.footprint)
    }

    fn technique_params(&self) -> serde_json::Value {
        self.params.clone()
    }

    fn layers(&self) -> Vec<LayerReport> {
        self.layers.clone()
    }

    fn flops_per_item(&self) -> Option<f64> {
        let tokens = self.batch.ids.dims2().ok()?.1;
        Some(self.bert.flops_per_sequence(tokens))
    }
}

/// The folder a `bert@DIR` model reads, if `model` is one.
pub fn model_dir_of(model: &str) -> Option<PathBuf> {
    model.strip_prefix(DIR_PREFIX).map(PathBuf::from)
}
