//! Which forward pass a language-model cell runs, behind one interface: slimbench's own CPU
//! engine ([`crate::llm::infer`]) on the CPU, candle's tensor ops
//! ([`crate::llm::candle_path`]) on every other device; each with its key/value cache.

use candle_core::Device;

use crate::error::{ModelError, Result};
use crate::llm::candle_path::{DeviceKvCache, DeviceLlama};
use crate::llm::infer::{forward, KvCache, KvStorage, Logits};
use crate::llm::model::Llama;

/// A model with its key/value cache, ready to run tokens.
pub enum Engine {
    /// slimbench's own kernels on the CPU.
    Own {
        /// The model.
        model: Box<Llama>,
        /// Its cache.
        cache: KvCache,
    },
    /// candle's ops (and `QMatMul` for the block formats) on a device.
    Candle {
        /// The model on the device.
        model: Box<DeviceLlama>,
        /// Its cache, on the device.
        cache: DeviceKvCache,
    },
}

impl Engine {
    /// The engine of a cell on `device`, with room for `capacity` tokens kept in `storage`:
    /// slimbench's own on the CPU, candle's elsewhere (which keeps its cache in f32 only).
    pub fn for_device(
        model: &Llama,
        device: &Device,
        capacity: usize,
        storage: KvStorage,
    ) -> Result<Self> {
        if device.is_cpu() {
            return Ok(Self::Own {
                cache: KvCache::with_storage(model, capacity, storage)?,
                model: Box::new(model.clone()),
            });
        }
        if storage != KvStorage::F32 {
            return Err(ModelError::NotApplicable(format!(
                "a {} key/value cache runs on slimbench's CPU engine only; on a GPU the cache is f32",
                storage.name()
            )));
        }
        Self::candle(model, device, capacity)
    }

    /// slimbench's own CPU engine.
    pub fn own(model: &Llama, capacity: usize) -> Self {
        Self::Own {
            cache: KvCache::new(model, capacity),
            model: Box::new(model.clone()),
        }
    }

    /// candle's engine on `device` (any device: on the CPU it runs the code a GPU runs).
    pub fn candle(model: &Llama, device: &Device, capacity: usize) -> Result<Self> {
        let model = DeviceLlama::new(model, device, capacity)?;
        let cache = model.cache()?;
        Ok(Self::Candle {
            model: Box::new(model),
            cache,
        })
    }

    /// Runs `tokens` at the cache's position; the logits of the last token or of every token
    /// (`rows x vocab`), on the host.
    pub fn forward(&mut self, tokens: &[u32], logits: Logits) -> Result<Vec<f32>> {
        match self {
            Self::Own { model, cache } => forward(model, tokens, cache, logits),
            Self::Candle { model, cache } => model.forward(tokens, cache, logits),
        }
    }

    /// Tokens in the cache.
    pub fn len(&self) -> usize {
        match self {
            Self::Own { cache, .. } => cache.len(),
            Self::Candle { cache, .. } => cache.len(),
        }
    }

    /// True when the cache holds no token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every token after the first `len`.
    pub fn truncate(&mut self, len: usize) {
        match self {
            Self::Own { cache, .. } => cache.truncate(len),
            Self::Candle { cache, .. } => cache.truncate(len),
        }
    }

    /// What runs the products, for the record: the CPU instruction set of slimbench's kernels,
    /// or `candle-<device>` (the block formats through candle's `QMatMul`).
    pub fn kernel(&self) -> &'static str {
        match self {
            Self::Own { .. } => crate::kernels::Isa::get().name(),
            Self::Candle { model, .. } if model.device().is_cuda() => "candle-cuda",
            Self::Candle { model, .. } if model.device().is_cpu() => "candle-cpu",
            Self::Candle { .. } => "candle",
        }
    }
}
