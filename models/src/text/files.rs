//! Where a text model's files live (the models cache or a user's folder), and loading them safely:
//! only safetensors weights, every failure naming the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::text::config::BertConfig;

pub use crate::fetch::models_dir;

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

/// What to do about a damaged file at `path`: fetch it again when it is in the models cache,
/// else write the user's checkpoint again.
fn repair_hint(path: &Path) -> &'static str {
    if path.starts_with(models_dir()) {
        "fetch it again (`slimbench fetch minilm`)"
    } else {
        "export or copy the checkpoint again"
    }
}

/// Parses the bytes of the safetensors file at `path` (named in errors).
pub fn parse_safetensors(bytes: &[u8], path: &Path) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|e| ModelError::Data {
        source_name: path.display().to_string(),
        message: format!(
            "not a valid safetensors file ({e}); it may be truncated: {}",
            repair_hint(path)
        ),
    })
}

/// Checks a checkpoint folder without loading its weights: the three files exist, `config.json`
/// parses, and `model.safetensors` has a whole header whose tensors all lie inside the file (a
/// truncated file fails here). For checking a user's folder before a run starts.
pub fn check_checkpoint(dir: &Path, hint: &str) -> Result<()> {
    let files = ModelFiles::locate(dir, hint)?;
    files.config()?;
    let path = &files.weights;
    let bad = |message: String| ModelError::Data {
        source_name: path.display().to_string(),
        message: format!("{message}; it may be truncated: {}", repair_hint(path)),
    };
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let len = file.metadata().map_err(|e| ModelError::io(path, e))?.len();
    let mut size = [0u8; 8];
    std::io::Read::read_exact(&mut file, &mut size)
        .map_err(|_| bad("shorter than a safetensors header".into()))?;
    let header_len = u64::from_le_bytes(size);
    if header_len > len.saturating_sub(8) || header_len > 100 * 1024 * 1024 {
        return Err(bad(format!(
            "its header claims {header_len} bytes but the file has {len}"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    std::io::Read::read_exact(&mut file, &mut header).map_err(|e| ModelError::io(path, e))?;
    let header: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("its header is not JSON ({e})")))?;
    let data_len = len - 8 - header_len;
    let tensors = header
        .as_object()
        .ok_or_else(|| bad("its header is not a JSON object".into()))?;
    for (name, t) in tensors.iter().filter(|(n, _)| n.as_str() != "__metadata__") {
        let end = t
            .get("data_offsets")
            .and_then(|o| o.get(1))
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad(format!("tensor {name} has no data_offsets")))?;
        if end > data_len {
            return Err(bad(format!(
                "tensor {name} ends at byte {end} of the data, which has {data_len}"
            )));
        }
    }
    Ok(())
}
