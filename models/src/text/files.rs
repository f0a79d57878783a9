//! Where a text model's files live (the models cache or a user's folder), and loading them safely:
//! only safetensors weights, every failure naming the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::text::config::BertConfig;

/// Environment variable that sets the models cache (fetched checkpoints and data sets).
pub const MODELS_ENV: &str = "SLIMBENCH_MODELS";

/// The models cache: `$SLIMBENCH_MODELS`, else `models/` inside slimbench's cache folder
/// (`$SLIMBENCH_CACHE`, `$XDG_CACHE_HOME/slimbench` or `~/.cache/slimbench`).
pub fn models_dir() -> PathBuf {
    match std::env::var_os(MODELS_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => crate::cache::default_cache_dir().join("models"),
    }
}

/// Weight files that hold pickled Python objects, which slimbench refuses to load.
const PICKLED: &[&str] = &[
    "pytorch_model.bin",
    "model.bin",
    "model.pt",
    "model.pth",
    "model.ckpt",
];

/// The three files of a BERT-family checkpoint in the Hugging Face layout.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFiles {
    /// The folder.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// `model.safetensors`.
    pub weights: PathBuf,
}

impl ModelFiles {
    /// Finds the files in `dir`; `hint` says how to get them when they are missing.
    pub fn locate(dir: &Path, hint: &str) -> Result<Self> {
        let files = Self {
            dir: dir.to_path_buf(),
            config: dir.join("config.json"),
            tokenizer: dir.join("tokenizer.json"),
            weights: dir.join("model.safetensors"),
        };
        if !files.weights.is_file() {
            if let Some(pickled) = PICKLED.iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
                return Err(ModelError::Data {
                    source_name: pickled.display().to_string(),
                    message:
                        "pickled checkpoints are refused: unpickling runs arbitrary code from \
                              the file. Convert it to model.safetensors (for example with the \
                              `safetensors` Python package) and put that in the folder"
                            .into(),
                });
            }
        }
        for path in [&files.config, &files.tokenizer, &files.weights] {
            if !path.is_file() {
                return Err(ModelError::Data {
                    source_name: path.display().to_string(),
                    message: format!("missing; {hint}"),
                });
            }
        }
        Ok(files)
    }

    /// Parses `config.json`.
    pub fn config(&self) -> Result<BertConfig> {
        BertConfig::load(&self.config)
    }

    /// Loads every tensor of `model.safetensors` onto the CPU.
    pub fn tensors(&self) -> Result<HashMap<String, Tensor>> {
        load_safetensors(&self.weights)
    }
}

/// Loads a safetensors file; a truncated or malformed file gives an error naming it.
pub fn load_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    parse_safetensors(&bytes, path)
}

/// Parses the bytes of the safetensors file at `path` (named in errors).
pub fn parse_safetensors(bytes: &[u8], path: &Path) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|e| ModelError::Data {
        source_name: path.display().to_string(),
        message: format!(
            "not a valid safetensors file ({e}); it may be truncated: fetch it again \
             (`slimbench fetch minilm`) or re-export the checkpoint"
        ),
    })
}
