//! A user's ONNX model's inputs: what the graph declares (name, element type, each dimension
//! fixed or named), read from a `.npz` file (`--inputs`), or generated from the declaration with
//! the batch size and `--dims name=value` for the other named dimensions; and labels
//! (`--labels`) for accuracy.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{ModelError, Result};
use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::proto::{
    tensor_shape_proto::dimension::Value as DimValue, type_proto, ModelProto,
};
use crate::onnx::runtime::Input;

/// The seed of generated inputs: the same model and shape get the same values in every run.
pub const INPUT_SEED: u64 = 34;

/// One dimension of a declared input.
#[derive(Debug, Clone, PartialEq)]
pub enum DeclaredDim {
    /// A fixed size.
    Fixed(usize),
    /// A named dimension (`batch`, `sequence`), set at run time.
    Named(String),
    /// A dimension the graph leaves unnamed and unsized.
    Unknown,
}

/// An input the graph declares (initializers that old graphs list as inputs left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    /// Its name.
    pub name: String,
    /// Its element type (`tensor_proto::DataType` as an integer).
    pub elem: i32,
    /// Its dimensions.
    pub dims: Vec<DeclaredDim>,
}

/// The inputs `model` declares, in order.
pub fn declared(model: &ModelProto) -> Result<Vec<Declared>> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| ModelError::Invalid("the ONNX model has no graph".into()))?;
    let initialized: Vec<&str> = graph
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    graph
        .input
        .iter()
        .filter(|i| !initialized.contains(&i.name.as_deref().unwrap_or_default()))
        .map(|i| {
            let name = i.name.clone().unwrap_or_default();
            let Some(type_proto::Value::TensorType(t)) =
                i.r#type.as_ref().and_then(|t| t.value.as_ref())
            else {
                return Err(ModelError::Invalid(format!(
                    "input {name:?} is not a tensor; slimbench feeds tensor inputs only"
                )));
            };
            let dims = t
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(DimValue::DimValue(n)) if *n > 0 => {
                                DeclaredDim::Fixed(*n as usize)
                            }
                            Some(DimValue::DimParam(p)) if !p.is_empty() => {
                                DeclaredDim::Named(p.clone())
                            }
                            _ => DeclaredDim::Unknown,
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(Declared {
                name,
                elem: t.elem_type.unwrap_or_default(),
                dims,
            })
        })
        .collect()
}

fn elem_name(elem: i32) -> String {
    DataType::try_from(elem)
        .map(|d| d.as_str_name().to_lowercase())
        .unwrap_or_else(|_| format!("type {elem}"))
}

/// Inputs generated from the declaration: the first dimension, when it is not fixed, is the
/// cell's batch size; every other named dimension comes from `dims`. Floats are uniform in
/// [0, 1); integers are ones for an input named like a mask, zeros for one named like token
/// types, else uniform in 0..10 (token ids, class indices: valid for any vocabulary); from a
/// fixed seed.
pub fn generate(
    declared: &[Declared],
    batch: usize,
    dims: &BTreeMap<String, usize>,
) -> Result<Vec<Input>> {
    let mut rng = ChaCha8Rng::seed_from_u64(INPUT_SEED);
    declared
        .iter()
        .map(|d| {
            let shape = d
                .dims
                .iter()
                .enumerate()
                .map(|(i, dim)| match dim {
                    DeclaredDim::Fixed(n) => Ok(*n),
                    DeclaredDim::Named(p) if dims.contains_key(p) => Ok(dims[p]),
                    _ if i == 0 => Ok(batch),
                    DeclaredDim::Named(p) => Err(ModelError::Invalid(format!(
                        "input {:?}: dimension {i} ({p}) is dynamic; give its size with --dims {p}=N",
                        d.name
                    ))),
                    DeclaredDim::Unknown => Err(ModelError::Invalid(format!(
                        "input {:?}: dimension {i} has neither a size nor a name; give the \
                         inputs with --inputs FILE.npz",
                        d.name
                    ))),
                })
                .collect::<Result<Vec<usize>>>()?;
            let n: usize = shape.iter().product();
            if d.elem == DataType::Float as i32 {
                Ok(Input::F32(shape, (0..n).map(|_| rng.gen::<f32>()).collect()))
            } else if d.elem == DataType::Int64 as i32 {
                // Transformers' conventions: an attention mask is all ones (no padding), token
                // types all zeros (one segment); other integers are ids in 0..10.
                let name = d.name.to_lowercase();
                let values = if name.contains("mask") {
                    vec![1; n]
                } else if name.contains("type") {
                    vec![0; n]
                } else {
                    (0..n).map(|_| rng.gen_range(0..10)).collect()
                };
                Ok(Input::I64(shape, values))
            } else {
                Err(ModelError::Invalid(format!(
                    "input {:?} is {}; slimbench generates float and int64 inputs: give the \
                     inputs with --inputs FILE.npz (float32 or int64 arrays)",
                    d.name,
                    elem_name(d.elem)
                )))
            }
        })
        .collect()
}

fn npy_array(bytes: &[u8], origin: &str) -> Result<Input> {
    let npy = npyz::NpyFile::new(bytes)
        .map_err(|e| ModelError::Invalid(format!("{origin}: not a .npy array: {e}")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|d| *d as usize).collect();
    let type_str = npy.dtype().descr();
    if type_str.contains("f4") {
        let data = npy
            .into_vec::<f32>()
            .map_err(|e| ModelError::Invalid(format!("{origin}: {e}")))?;
        Ok(Input::F32(shape, data))
    } else if type_str.contains("i8") {
        let data = npy
            .into_vec::<i64>()
            .map_err(|e| ModelError::Invalid(format!("{origin}: {e}")))?;
        Ok(Input::I64(shape, data))
    } else {
        Err(ModelError::Invalid(format!(
            "{origin}: arrays of {type_str} are not read; save float32 or int64 arrays"
        )))
    }
}

fn shape_of(input: &Input) -> &[usize] {
    match input {
        Input::F32(s, _) | Input::I64(s, _) => s,
    }
}

/// The inputs in `path` (a `.npz`: one array a declared input, named as the input), checked
/// against the declaration; returns them in the graph's order and their batch (first dimension).
pub fn from_npz(path: &Path, declared: &[Declared]) -> Result<(Vec<Input>, usize)> {
    let origin = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| ModelError::Invalid(format!("--inputs {origin}: not a .npz archive: {e}")))?;
    let mut inputs = Vec::new();
    for d in declared {
        let entry_name = format!("{}.npy", d.name);
        let mut entry =
            archive.by_name(&entry_name).map_err(|_| {
                ModelError::Invalid(format!(
                "--inputs {origin}: no array {:?}; the graph's inputs are {} (numpy.savez(file, \
                 name=array, ...))",
                d.name,
                declared.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
            ))
            })?;
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| ModelError::io(path, e))?;
        let input = npy_array(&bytes, &format!("--inputs {origin}: {entry_name}"))?;
        let shape = shape_of(&input);
        let fits = shape.len() == d.dims.len()
            && shape.iter().zip(&d.dims).all(|(n, dim)| match dim {
                DeclaredDim::Fixed(f) => f == n,
                _ => true,
            });
        if !fits {
            return Err(ModelError::Invalid(format!(
                "--inputs {origin}: array {:?} has shape {shape:?}, the graph declares {:?}",
                d.name, d.dims
            )));
        }
        inputs.push(input);
    }
    let batch = inputs
        .first()
        .map_or(1, |i| shape_of(i).first().copied().unwrap_or(1));
    Ok((inputs, batch))
}

/// Class labels from `path`: a `.npy` of integers, or text with one integer a line.
pub fn labels(path: &Path) -> Result<Vec<u32>> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    if path.extension().is_some_and(|e| e == "npy") {
        return match npy_array(&bytes, &format!("--labels {origin}"))? {
            Input::I64(_, v) => Ok(v.into_iter().map(|v| v.max(0) as u32).collect()),
            Input::F32(..) => Err(ModelError::Invalid(format!(
                "--labels {origin}: labels are class indices; save an int64 array"
            ))),
        };
    }
    String::from_utf8_lossy(&bytes)
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            l.trim().parse::<u32>().map_err(|_| ModelError::DataLine {
                source_name: format!("--labels {origin}"),
                line: i + 1,
                message: format!(
                    "{:?} is not a class index (a whole number from 0)",
                    l.trim()
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_parse_as_pairs_and_bad_ones_name_the_flag() {
        use crate::workload::ModelInputs;
        let d = ModelInputs::parse_dims("sequence=128, height=224").unwrap();
        assert_eq!(d["sequence"], 128);
        assert_eq!(d["height"], 224);
        for bad in ["sequence", "sequence=0", "sequence=x"] {
            let e = ModelInputs::parse_dims(bad).unwrap_err().to_string();
            assert!(e.contains("--dims"), "{e}");
        }
    }

    #[test]
    fn generated_inputs_take_the_batch_and_the_named_dims_and_say_which_is_missing() {
        let declared = vec![Declared {
            name: "ids".into(),
            elem: DataType::Int64 as i32,
            dims: vec![
                DeclaredDim::Named("batch".into()),
                DeclaredDim::Named("sequence".into()),
            ],
        }];
        let e = generate(&declared, 2, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--dims sequence=N"), "{e}");
        let dims = BTreeMap::from([("sequence".to_string(), 5)]);
        match &generate(&declared, 3, &dims).unwrap()[0] {
            Input::I64(shape, v) => {
                assert_eq!(shape, &vec![3, 5]);
                assert!(v.iter().all(|x| (0..10).contains(x)));
            }
            other => panic!("{other:?}"),
        }
    }
}
