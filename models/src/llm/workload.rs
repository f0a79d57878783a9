//! The language-model workload: a variant generating greedily from a fixed prompt of the
//! held-out text (prefill, then decode steps), judged by perplexity, KL divergence and top-1
//! agreement against the reference on the held-out chunks.

use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::cache::sha256_hex;
use crate::error::{ModelError, Result};
use crate::family::Variant;
use crate::fetch::models_dir;
use crate::linears::Linears;
use crate::llm::engine::Engine;
use crate::llm::fetch::{smollm2_path, sotu_paths, SMOLLM2};
use crate::llm::infer::{KvCache, KvStorage, Logits};
use crate::llm::model::Llama;
use crate::llm::quality::{
    argmax, chunks, language_quality, reference_log_probs, QUALITY_CHUNKS, QUALITY_CTX,
};
use crate::llm::LlmSource;
use crate::workload::{
    Built, Footprint, Generation, Quality, VariantReport, Workload, WorkloadSpec,
};

/// Prompt tokens when a plan names none.
pub const DEFAULT_PROMPT_LEN: usize = 128;
/// Generated tokens when a plan names none.
pub const DEFAULT_GEN_TOKENS: usize = 64;
/// Prefix of a model given as a GGUF file (`--model-dir` is for folders; `llama@FILE` names a
/// file).
pub const FILE_PREFIX: &str = "llama@";
/// What the reference of every language-model record is.
pub const REFERENCE_NAME: &str = "f32 dequantized from the shipped GGUF file (itself quantized)";

/// The GGUF file of a language model of the catalogue, or of `llama@FILE`.
pub fn model_file(model: &str) -> Result<PathBuf> {
    if model == SMOLLM2 {
        let path = smollm2_path(&models_dir());
        if !path.is_file() {
            return Err(ModelError::Invalid(format!(
                "{} is missing: run `slimbench fetch smollm2` (or set SLIMBENCH_MODELS to the folder that holds smollm2/)",
                path.display()
            )));
        }
        return Ok(path);
    }
    match model.strip_prefix(FILE_PREFIX) {
        Some(file) => Ok(PathBuf::from(file)),
        None => Err(ModelError::Invalid(format!(
            "{model:?} is not a language model"
        ))),
    }
}

/// Environment variable naming another held-out text for the language-model quality measures.
pub const TEXT_ENV: &str = "SLIMBENCH_LLM_TEXT";

/// Environment variable naming another calibration text (for techniques that need data).
pub const CALIBRATION_ENV: &str = "SLIMBENCH_LLM_CALIBRATION";

/// Tokens of calibration text a technique reads.
pub const CALIBRATION_TOKENS: usize = 512;

/// The text file named by `env` when set, else `fetched`; the error says how to get either.
fn text_file(env: &str, fetched: PathBuf) -> Result<(PathBuf, String)> {
    let path = std::env::var_os(env)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or(fetched);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ModelError::Invalid(format!(
            "{}: {e}; run `slimbench fetch smollm2` (or set {env} to a UTF-8 text file)",
            path.display()
        ))
    })?;
    Ok((path, text))
}

/// The held-out text: the fetched addresses from 2001 on, or `$SLIMBENCH_LLM_TEXT` when set.
pub fn heldout_text() -> Result<(PathBuf, String)> {
    text_file(TEXT_ENV, sotu_paths(&models_dir()).0)
}

/// The calibration text (never scored): the fetched addresses of 1990-2000, or
/// `$SLIMBENCH_LLM_CALIBRATION` when set.
pub fn calibration_text() -> Result<(PathBuf, String)> {
    text_file(CALIBRATION_ENV, sotu_paths(&models_dir()).1)
}

/// The stem of a language model's cache entries.
pub fn cache_stem(model: &str) -> String {
    if model == SMOLLM2 {
        return SMOLLM2.into();
    }
    let name = Path::new(model.trim_start_matches(FILE_PREFIX))
        .file_stem()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "llama".into());
    format!(
        "llama-{}",
        name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

/// A variant generating from a fixed prompt.
pub struct LlmWorkload {
    engine: Engine,
    kv_cache_bytes: usize,
    prompt: Vec<u32>,
    gen_tokens: usize,
    next: u32,
    generated: usize,
    first: u32,
    quality: Quality,
}

fn greedy(logits: &[f32]) -> u32 {
    argmax(logits) as u32
}

/// Builds the workload of one cell.
pub fn build(
    spec: &WorkloadSpec,
    device: &Device,
    variant: Variant<Llama, LlmSource>,
) -> Result<Built> {
    let cell = &spec.cell;
    let prompt_len = cell
        .dim(&crate::dimension::SEQ_LEN)
        .unwrap_or(DEFAULT_PROMPT_LEN);
    let gen_tokens = cell
        .dim(&crate::dimension::GEN_TOKENS)
        .unwrap_or(DEFAULT_GEN_TOKENS);
    if cell.batch_size != 1 {
        return Err(ModelError::NotApplicable(format!(
            "batch {} : the language-model workload generates one sequence at a time (batch 1)",
            cell.batch_size
        )));
    }
    if gen_tokens == 0 || prompt_len == 0 {
        return Err(ModelError::Invalid(
            "a language-model cell needs at least one prompt token and one generated token".into(),
        ));
    }
    let (model, layers) = variant.final_model(|m| m.layer_reports(&|_| None))?;
    let source = &variant.base.source;
    let (text_path, text) = heldout_text()?;
    let tokens = source.tokenizer.encode(&text)?;
    let context = prompt_len + gen_tokens;
    if context > model.config.context_length {
        return Err(ModelError::Invalid(format!(
            "{prompt_len} prompt + {gen_tokens} generated tokens exceed the model's context of {}",
            model.config.context_length
        )));
    }
    if tokens.len() < prompt_len.max(QUALITY_CTX) {
        return Err(ModelError::Invalid(format!(
            "{}: {} tokens, fewer than the prompt ({prompt_len}) or one quality chunk ({QUALITY_CTX})",
            text_path.display(),
            tokens.len()
        )));
    }
    let prompt = tokens[..prompt_len].to_vec();
    let ctx = QUALITY_CTX.min(model.config.context_length);
    let held = chunks(&tokens, ctx, QUALITY_CHUNKS, source.bos);
    let reference_key = serde_json::json!({
        "base": variant.base.key,
        "text_sha256": sha256_hex(text.as_bytes()),
        "ctx": ctx,
        "chunks": held.len(),
        "format": 1,
    })
    .to_string();
    let reference =
        reference_log_probs(&variant.base.model, &held, &spec.cache_dir, &reference_key)?;
    // One engine (one copy of the weights on the device) serves the quality pass and then the
    // generation; its cache holds the longer of the two.
    let capacity = context.max(held.iter().map(Vec::len).max().unwrap_or(0));
    let storage = if cell.technique.kv_cache_q8_0() {
        KvStorage::Q8_0
    } else {
        KvStorage::F32
    };
    let mut engine = Engine::for_device(&model, device, capacity, storage)?;
    let language = language_quality(&mut engine, &held, &reference, REFERENCE_NAME)?;
    let quality = Quality {
        metric: "top-1 agreement".into(),
        value_pct: language.top1_agreement_pct,
        baseline_pct: 100.0,
        items: language.scored_tokens,
        fidelity: None,
        language: Some(language),
        paired: None,
    };
    let footprint = Footprint {
        parameter_count: model.parameter_count(),
        nonzero_parameter_count: model.nonzero_parameter_count()?,
        model_bytes: model.stored_bytes(),
    };
    let mut params = serde_json::json!({
        "steps": variant.params,
        "reference": REFERENCE_NAME,
        "prompt": format!("the first {prompt_len} tokens of {}", text_path.display()),
        "decoding": "greedy; after the generated tokens the cache is cut back to the prompt",
        "kv_cache": storage.name(),
    });
    if let Some(obj) = params.as_object_mut() {
        obj.insert("kernel".into(), engine.kernel().into());
        if matches!(engine, Engine::Own { .. }) {
            obj.extend(crate::row_linear::kernel_params(&layers));
        }
    }
    engine.truncate(0);
    let report = VariantReport {
        footprint,
        technique_params: params,
        // FLOPs of one decode step: every Linear once (the token's matrix-vector products).
        flops_per_item: Some(
            model
                .linears()
                .iter()
                .map(|l| 2.0 * (l.in_dim * l.out_dim) as f64)
                .sum(),
        ),
        layers,
    };
    let workload = LlmWorkload {
        kv_cache_bytes: KvCache::bytes_for(&model, context, storage),
        engine,
        prompt,
        gen_tokens,
        next: 0,
        generated: 0,
        first: 0,
        quality,
    };
    Ok(Built {
        workload: Box::new(workload),
        report,
    })
}

impl Generation for LlmWorkload {
    fn prompt_tokens(&self) -> usize {
        self.prompt.len()
    }

    fn gen_tokens(&self) -> usize {
        self.gen_tokens
    }

    fn prefill(&mut self) -> Result<()> {
        self.engine.truncate(0);
        let logits = self.engine.forward(&self.prompt, Logits::Last)?;
        self.first = greedy(&logits);
        self.next = self.first;
        self.generated = 0;
        Ok(())
    }

    fn decode_step(&mut self) -> Result<()> {
        if self.engine.is_empty() {
            self.prefill()?;
        }
        if self.generated == self.gen_tokens {
            self.engine.truncate(self.prompt.len());
            self.next = self.first;
            self.generated = 0;
        }
        let logits = self.engine.forward(&[self.next], Logits::Last)?;
        self.next = greedy(&logits);
        self.generated += 1;
        Ok(())
    }

    fn kv_cache_bytes(&self) -> usize {
        self.kv_cache_bytes
    }
}

impl Workload for LlmWorkload {
    fn batch_size(&self) -> usize {
        1
    }

    /// One whole generation: the prompt, then every generated token.
    fn run_batch(&mut self) -> Result<()> {
        self.prefill()?;
        for _ in 0..self.gen_tokens {
            self.decode_step()?;
        }
        Ok(())
    }

    fn quality(&self) -> Result<Quality> {
        Ok(self.quality.clone())
    }

    fn generation(&mut self) -> Option<&mut dyn Generation> {
        Some(self)
    }
}
