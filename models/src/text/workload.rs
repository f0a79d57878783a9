//! The text-model workload: a BERT variant timed on a fixed batch of emails at a fixed sequence
//! length, and judged by fidelity
//! (cosine of its sentence embeddings to the fp32 model's) and spam accuracy of an fp32-trained
//! logistic-regression probe on its embeddings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::cache::{entry_path, load_or_build, sha256_hex};
use crate::error::{ModelError, Result};
use crate::family::{Base, Variant};
use crate::linears::Linears;
use crate::text::bert::{row_cosines, Bert};
use crate::text::emails::{emails_path, load_split, EmailSplit};
use crate::text::files::{models_dir, ModelFiles};
use crate::text::probe::Probe;
use crate::text::tokenize::{Encoded, Padding, TextTokenizer};
use crate::text::TextSource;
use crate::workload::{Built, Footprint, Quality, VariantReport, Workload, WorkloadSpec};

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

/// The stem of a text model's cache entries: `minilm`, or `bert-<folder>`.
pub fn cache_stem(model: &str) -> String {
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

/// Sentence embeddings of `texts` at the quality sequence length, as rows (on the CPU, computed on
/// the model's device).
pub fn embed_texts(bert: &Bert, tokenizer: &mut TextTokenizer, texts: &[&str]) -> Result<Tensor> {
    let device = bert.device();
    embed_texts_with(
        &mut |input: &Encoded| {
            Ok(bert
                .embed(&input.to_device(&device)?, false)?
                .to_device(&Device::Cpu)?)
        },
        tokenizer,
        texts,
    )
}

/// A function from an encoded batch to its sentence embeddings (on the CPU): the own engine's
/// model, or a graph on ONNX Runtime.
pub type EmbedFn<'a> = dyn FnMut(&Encoded) -> Result<Tensor> + 'a;

/// [`embed_texts`] through `embed`.
pub fn embed_texts_with(
    embed: &mut EmbedFn<'_>,
    tokenizer: &mut TextTokenizer,
    texts: &[&str],
) -> Result<Tensor> {
    let mut parts = Vec::new();
    for chunk in texts.chunks(QUALITY_BATCH) {
        let input = tokenizer.encode(chunk, Padding::Longest(QUALITY_SEQ_LEN))?;
        parts.push(embed(&input)?);
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
    base: &Base<Bert, TextSource>,
    split: &EmailSplit,
    tok: &mut TextTokenizer,
    cache_dir: &Path,
    model: &str,
) -> Result<Reference> {
    let key = format!("{}|emails {}|reference 1", base.key, split.sha256);
    let path = entry_path(cache_dir, &format!("{}-reference", cache_stem(model)), &key);
    let (tensors, _) = load_or_build(&path, || {
        let bert = &base.model;
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

/// Fidelity and spam accuracy of the variant that `embed` runs (its embeddings cached under
/// `variant_key`) against the fp32 reference.
pub(crate) fn text_quality(
    embed: &mut EmbedFn<'_>,
    base: &Base<Bert, TextSource>,
    variant_key: &str,
    split: &EmailSplit,
    tok: &mut TextTokenizer,
    cache_dir: &Path,
    model: &str,
) -> Result<Quality> {
    let reference = reference(base, split, tok, cache_dir, model)?;
    let key = format!("{variant_key}|emails {}|quality 1", split.sha256);
    let path = entry_path(cache_dir, &format!("{}-quality", cache_stem(model)), &key);
    let (tensors, _) = load_or_build(&path, || {
        let test: Vec<&str> = split.test.iter().map(|e| e.text.as_str()).collect();
        Ok(HashMap::from([(
            "test_embeddings".to_string(),
            embed_texts_with(embed, tok, &test)?,
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
    let variant_rows = rows_of(emb)?;
    Ok(Quality {
        metric: "spam_accuracy".into(),
        value_pct: reference.probe.accuracy_pct(&variant_rows, &labels),
        baseline_pct: reference.accuracy_pct,
        items: labels.len(),
        fidelity: Some(fidelity),
        language: None,
        paired: Some(crate::quality::PairedOutcomes::from_correct(
            &reference
                .probe
                .correct(&rows_of(&reference.test_embeddings)?, &labels),
            &reference.probe.correct(&variant_rows, &labels),
        )),
    })
}

/// Builds the workload of one text cell from its variant.
pub(crate) fn build(
    spec: &WorkloadSpec,
    device: &Device,
    variant: Variant<Bert, TextSource>,
) -> Result<Built> {
    let cell = &spec.cell;
    let seq_len = cell
        .dim(&crate::dimension::SEQ_LEN)
        .unwrap_or(DEFAULT_SEQ_LEN);
    let (bert, layers) = variant.final_model(|b| b.layer_reports(&|_| None))?;
    let positions = bert.position_embeddings.dim(0)?;
    if seq_len > positions {
        return Err(ModelError::NotApplicable(format!(
            "sequence length {seq_len} exceeds the model's {positions} position embeddings"
        )));
    }
    let bert = bert.to_device(device)?;
    let split = email_split()?;
    let texts: Vec<&str> = (0..cell.batch_size)
        .map(|i| split.test[i % split.test.len()].text.as_str())
        .collect();
    let mut tokenizer = TextTokenizer::load(&variant.base.source.files.tokenizer)?;
    let batch = tokenizer
        .encode(&texts, Padding::Fixed(seq_len))?
        .to_device(device)?;
    // The corpus and the tokenizer, read once, serve the timed batch and the quality tasks.
    let quality = text_quality(
        &mut |input: &Encoded| {
            Ok(bert
                .embed(&input.to_device(device)?, false)?
                .to_device(&Device::Cpu)?)
        },
        &variant.base,
        &variant.key,
        &split,
        &mut tokenizer,
        &spec.cache_dir,
        &cell.model,
    )?;
    let model_bytes = layers.iter().map(|l| l.bytes).sum();
    let footprint = Footprint {
        parameter_count: bert.parameter_count(),
        nonzero_parameter_count: bert.nonzero_parameter_count()?,
        model_bytes,
    };
    let tokens = batch.ids.dims2()?.1;
    let mut technique_params = serde_json::json!({
        "steps": variant.params,
        "seq_len": seq_len,
        "quality": {
            "texts": split.test.len(),
            "seq_len": QUALITY_SEQ_LEN,
            "fidelity": "mean cosine of mean-pooled, L2-normalised embeddings to the fp32 model's",
            "spam_probe": "logistic regression on fp32 embeddings of 512 emails, evaluated on the variant's",
        },
        "model_files": variant.base.source.files.dir,
    });
    if let (Some(obj), true) = (technique_params.as_object_mut(), device.is_cpu()) {
        obj.extend(crate::row_linear::kernel_params(&layers));
    }
    let report = VariantReport {
        footprint,
        flops_per_item: Some(bert.flops_per_sequence(tokens)),
        layers,
        technique_params,
    };
    let workload = TextWorkload {
        bert,
        device: device.clone(),
        batch,
        batch_size: cell.batch_size,
        quality,
    };
    Ok(Built {
        workload: Box::new(workload),
        report,
    })
}

/// A prepared text variant with its fixed timing batch and its quality, computed once.
struct TextWorkload {
    bert: Bert,
    device: Device,
    batch: crate::text::tokenize::Encoded,
    batch_size: usize,
    quality: Quality,
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
}

/// The folder a `bert@DIR` model reads, if `model` is one.
pub fn model_dir_of(model: &str) -> Option<PathBuf> {
    model.strip_prefix(DIR_PREFIX).map(PathBuf::from)
}
