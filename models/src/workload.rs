//! The small interface through which the harness reaches a model variant (run one batch, report
//! quality and footprint). A [`Cell`] names it; [`crate::catalog::build_workload`] builds it
//! through its model's family.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::dimension::{DimValues, Dimension};
use crate::engine::Engine;
use crate::error::{ModelError, Result};
use crate::layer::LayerReport;
use crate::quality::LanguageQuality;
use crate::technique::Technique;

/// The identity of a cell in a plan: model x technique x device x batch size, x each dimension
/// its family declares beyond the batch size ([`crate::dimension`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell {
    /// Model name from the catalogue.
    pub model: String,
    /// Technique (or chain), serialised as its name.
    pub technique: Technique,
    /// Device name (`cpu`, `cuda:N`).
    pub device: String,
    /// Items per batch.
    pub batch_size: usize,
    /// The values of the family's other dimensions (tokens per text, generated tokens, ...),
    /// serialised each under its own key beside the fields above.
    pub dims: DimValues,
    /// The engine that runs the variant (`slimbench` when a record has none: records of
    /// versions before engines).
    pub engine: Engine,
}

impl Cell {
    /// A cell without dimensions beyond the batch size.
    pub fn new(model: &str, technique: Technique, device: &str, batch_size: usize) -> Self {
        Self {
            model: model.to_string(),
            technique,
            device: device.to_string(),
            batch_size,
            dims: DimValues::default(),
            engine: Engine::Slimbench,
        }
    }

    /// The cell on `engine`.
    pub fn on_engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// The cell with `dimension` set to `value`.
    pub fn with_dim(mut self, dimension: &'static Dimension, value: usize) -> Self {
        self.dims.set(dimension, value);
        self
    }

    /// The value of `dimension` in this cell, if its family has the dimension.
    pub fn dim(&self, dimension: &Dimension) -> Option<usize> {
        self.dims.get(dimension)
    }

    /// The batch shape for tables: `32`, or the batch with each dimension after its separator:
    /// `8x128` (texts x tokens), `1x32+64` (prompt + generated tokens).
    pub fn batch_label(&self) -> String {
        let mut out = self.batch_size.to_string();
        for (d, v) in self.dims.iter() {
            out.push_str(&format!("{}{v}", d.shape_separator));
        }
        out
    }

    /// The technique with its engine where it is not slimbench's own, for charts and
    /// recommendations: `int8`, `int8 on ort`.
    pub fn variant_label(&self) -> String {
        if self.engine.is_default() {
            self.technique.to_string()
        } else {
            format!("{} on {}", self.technique, self.engine)
        }
    }

    /// The model with its dimensions, for chart groups: `minilm (128 tokens)`.
    pub fn model_label(&self) -> String {
        if self.dims.is_empty() {
            return self.model.clone();
        }
        let parts: Vec<String> = self
            .dims
            .iter()
            .map(|(d, v)| format!("{v} {}", d.label))
            .collect();
        format!("{} ({})", self.model, parts.join(" + "))
    }

    /// True when `other` has the same model, engine, device, batch size and dimensions (the
    /// cells a variant is compared across: a variant against its own engine's baseline).
    pub fn same_setting(&self, other: &Cell) -> bool {
        self.model == other.model
            && self.engine == other.engine
            && self.device == other.device
            && self.batch_size == other.batch_size
            && self.dims == other.dims
    }

    /// True for a cell on the host CPU.
    pub fn on_cpu(&self) -> bool {
        self.device == crate::device::CPU
    }
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/b{}",
            self.model, self.technique, self.device, self.batch_size
        )?;
        for (d, v) in self.dims.iter() {
            write!(f, "/{}{v}", d.slug)?;
        }
        // The own engine's cells keep the names they had before engines existed.
        if !self.engine.is_default() {
            write!(f, "/{}", self.engine)?;
        }
        Ok(())
    }
}

impl Serialize for Cell {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("model", &self.model)?;
        map.serialize_entry("technique", &self.technique)?;
        map.serialize_entry("device", &self.device)?;
        map.serialize_entry("batch_size", &self.batch_size)?;
        map.serialize_entry("engine", &self.engine)?;
        self.dims.serialize_into(&mut map)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_map(CellVisitor)
    }
}

/// Reads a cell's fields, and each known dimension's value under its key; other keys are left to
/// the record that holds the cell.
struct CellVisitor;

impl<'de> serde::de::Visitor<'de> for CellVisitor {
    type Value = Cell;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a cell: model, technique, device, batch_size and its dimensions")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Cell, A::Error> {
        use serde::de::Error;
        let (mut model, mut technique, mut device, mut batch_size) = (None, None, None, None);
        let mut engine = Engine::Slimbench;
        let mut dims = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "model" => model = Some(map.next_value::<String>()?),
                "technique" => technique = Some(map.next_value::<Technique>()?),
                "device" => device = Some(map.next_value::<String>()?),
                "batch_size" => batch_size = Some(map.next_value::<usize>()?),
                "engine" => engine = map.next_value::<Engine>()?,
                other => match crate::dimension::by_key(other) {
                    Some(d) => {
                        // `null` is how an absent dimension read in records of old versions.
                        if let Some(v) = map.next_value::<Option<usize>>()? {
                            dims.push((d, v));
                        }
                    }
                    None => {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                },
            }
        }
        Ok(Cell {
            model: model.ok_or_else(|| A::Error::missing_field("model"))?,
            technique: technique.ok_or_else(|| A::Error::missing_field("technique"))?,
            device: device.ok_or_else(|| A::Error::missing_field("device"))?,
            batch_size: batch_size.ok_or_else(|| A::Error::missing_field("batch_size"))?,
            dims: DimValues::new(dims),
            engine,
        })
    }
}

/// What to build: one cell, and where the prepared-weights cache is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// The cell.
    #[serde(flatten)]
    pub cell: Cell,
    /// The prepared-weights cache folder.
    pub cache_dir: PathBuf,
    /// What a model given as a file (`onnx@PATH`) is fed; the catalogue's models ignore it.
    #[serde(default, skip_serializing_if = "ModelInputs::is_empty")]
    pub model_inputs: ModelInputs,
}

/// The inputs of a user's ONNX model (`--inputs`, `--dims`, `--labels`): arrays from a `.npz`,
/// or generated from the graph's declaration with these sizes for its named dimensions; and
/// class labels for accuracy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInputs {
    /// A `.npz` with one array a graph input, named as the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<PathBuf>,
    /// The size of each named dimension of the generated inputs (`sequence` -> 128).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub dims: std::collections::BTreeMap<String, usize>,
    /// Class labels of the inputs' items (`.npy` of int64, or one integer a line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<PathBuf>,
}

impl ModelInputs {
    /// True when nothing is given.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Parses `--dims`: `name=value` pairs, comma-separated (`sequence=128,height=224`).
    pub fn parse_dims(text: &str) -> Result<std::collections::BTreeMap<String, usize>> {
        let mut dims = std::collections::BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').ok_or_else(|| {
                ModelError::Invalid(format!(
                    "--dims {part:?}: give name=value pairs, comma-separated (sequence=128)"
                ))
            })?;
            let value: usize = value
                .trim()
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| {
                    ModelError::Invalid(format!(
                        "--dims {part:?}: the value must be a whole number of at least 1"
                    ))
                })?;
            dims.insert(name.trim().to_string(), value);
        }
        Ok(dims)
    }
}

/// Quality of a variant and of its uncompressed baseline on the same held-out data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Metric name, for example `accuracy`.
    pub metric: String,
    /// The variant's value, in percent.
    pub value_pct: f64,
    /// The uncompressed model's value on the same data, in percent.
    pub baseline_pct: f64,
    /// Number of held-out items evaluated.
    pub items: usize,
    /// Mean cosine similarity of the variant's embeddings to the uncompressed model's (0..1), for
    /// models that produce embeddings.
    pub fidelity: Option<f64>,
    /// Perplexity, KL divergence and top-1 agreement, for language models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<LanguageQuality>,
    /// For classification: the variant and the uncompressed model item by item, for a paired test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired: Option<crate::quality::PairedOutcomes>,
}

/// Parameter counts and storage size of a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footprint {
    /// All parameters.
    pub parameter_count: usize,
    /// Parameters that are not zero.
    pub nonzero_parameter_count: usize,
    /// Bytes of the weights as stored (quantized blocks and sparse layers at their real size).
    pub model_bytes: usize,
}

/// What a built variant is, stated once by its family when the workload is built: the record's
/// footprint, technique parameters, layers and FLOP count.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantReport {
    /// Parameter counts and size.
    pub footprint: Footprint,
    /// The technique's parameters, as recorded.
    pub technique_params: serde_json::Value,
    /// What each layer became.
    pub layers: Vec<LayerReport>,
    /// FLOPs of one item (a multiply-add counts two), where the model counts them.
    pub flops_per_item: Option<f64>,
}

/// A cell's variant, built: what the harness times, and what the variant is.
pub struct Built {
    /// The timed calls and the quality evaluation.
    pub workload: Box<dyn Workload>,
    /// Footprint, parameters, layers, FLOPs.
    pub report: VariantReport,
}

/// What the harness runs of a prepared variant: the timed call, the generative phases, and the
/// quality evaluation (a method, not a value: a family may evaluate lazily, and the worker calls
/// it after the timed windows so that its pass never counts in the inference's peak memory).
pub trait Workload {
    /// Items in one batch.
    fn batch_size(&self) -> usize;
    /// Runs one batch to completion (synchronising the device where it is asynchronous).
    fn run_batch(&mut self) -> Result<()>;
    /// Quality of this variant and of the baseline on the held-out split.
    fn quality(&self) -> Result<Quality>;
    /// The prefill and decode phases, timed apart, for generative models; `None` for the others.
    fn generation(&mut self) -> Option<&mut dyn Generation> {
        None
    }
}

/// A generative model's two phases: the prompt in one pass (prefill), then one token at a time
/// (decode), each step reading every weight once.
pub trait Generation {
    /// Tokens in the prompt.
    fn prompt_tokens(&self) -> usize;
    /// Tokens generated after the prompt before the sequence starts over.
    fn gen_tokens(&self) -> usize;
    /// Empties the key/value cache and runs the prompt, up to the first generated token.
    fn prefill(&mut self) -> Result<()>;
    /// Generates one more token (greedy); after [`Generation::gen_tokens`] steps the cache is cut
    /// back to the prompt and generation starts over, so every step attends to between the
    /// prompt's length and the prompt plus the generated tokens.
    fn decode_step(&mut self) -> Result<()>;
    /// Bytes of the key/value cache at its full length.
    fn kv_cache_bytes(&self) -> usize;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_keeps_its_engine_through_json_and_a_record_without_one_is_the_own_engines() {
        let cell =
            Cell::new("digits-mlp", "int8".parse().unwrap(), "cpu", 4).on_engine(Engine::Ort);
        let json = serde_json::to_string(&cell).unwrap();
        assert!(json.contains("\"engine\":\"ort\""), "{json}");
        assert_eq!(serde_json::from_str::<Cell>(&json).unwrap(), cell);
        assert_eq!(cell.to_string(), "digits-mlp/int8/cpu/b4/ort");
        assert_eq!(cell.variant_label(), "int8 on ort");
        let old = r#"{"model":"digits-mlp","technique":"int8","device":"cpu","batch_size":4}"#;
        let read: Cell = serde_json::from_str(old).unwrap();
        assert_eq!(read.engine, Engine::Slimbench);
        assert_eq!(read.to_string(), "digits-mlp/int8/cpu/b4");
        assert!(!read.same_setting(&cell.clone().on_engine(Engine::Ort)));
    }
}
