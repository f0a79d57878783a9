//! ONNX Runtime, loaded at run time: where its library is (`$ORT_DYLIB_PATH`, else the one
//! `slimbench fetch onnxruntime` put in the models cache), the one environment of a process, and
//! a session over a graph's bytes with slimbench's settings (intra-op threads, sequential
//! execution, every graph optimisation).

use std::path::PathBuf;
use std::sync::OnceLock;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{DynValue, Tensor};

use crate::error::{ModelError, Result};

/// The ONNX Runtime release slimbench fetches and is built against (`ort` 2.0.0-rc.15 speaks
/// its C API, level 31, and refuses a library older than 1.31).
pub const ORT_RELEASE: &str = "1.31.0";
/// The library's file name in the wheel and in the models cache.
pub const ORT_LIBRARY: &str = "libonnxruntime.so.1.31.0";
/// Environment variable naming a library to use instead of the fetched one.
pub const DYLIB_ENV: &str = "ORT_DYLIB_PATH";
/// The folder of the models cache the fetch writes the library into.
pub const ORT_DIR: &str = "onnxruntime";
/// The graph optimisation level sessions run at, as recorded.
pub const OPTIMIZATION: &str = "all";

/// Where the library is: `$ORT_DYLIB_PATH` when set, else the fetched one in the models cache.
/// A missing library is an error that says how to get one.
pub fn library_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(DYLIB_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(ModelError::Invalid(format!(
                "{DYLIB_ENV}={} is not a file; point it at libonnxruntime.so ({ORT_RELEASE} or \
                 later) or unset it and run `slimbench fetch onnxruntime`",
                path.display()
            )));
        }
        return Ok(path);
    }
    let path = crate::fetch::models_dir().join(ORT_DIR).join(ORT_LIBRARY);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelError::Invalid(format!(
            "the ort engine needs ONNX Runtime {ORT_RELEASE}, not found at {}: run `slimbench \
             fetch onnxruntime` (pip download from PyPI), or set {DYLIB_ENV} to a \
             libonnxruntime.so of release {ORT_RELEASE} or later",
            path.display()
        )))
    }
}

/// True when a library is where [`library_path`] looks (for tests and plans that skip the
/// engine with a reason).
pub fn available() -> bool {
    library_path().is_ok()
}

fn ort_err(what: &str, e: impl std::fmt::Display) -> ModelError {
    ModelError::Invalid(format!("ONNX Runtime: {what}: {e}"))
}

/// Loads the library and makes the process's environment, once; later calls return the first
/// call's outcome.
pub fn init() -> Result<&'static ort::environment::Environment> {
    static ENVIRONMENT: OnceLock<std::result::Result<ort::environment::Environment, String>> =
        OnceLock::new();
    let outcome = ENVIRONMENT.get_or_init(|| {
        let path = library_path().map_err(|e| e.to_string())?;
        ort::init_from(&path)
            .map_err(|e| format!("loading {}: {e}", path.display()))?
            .with_name("slimbench")
            .build()
            .map_err(|e| format!("creating its environment: {e}"))
    });
    match outcome {
        Ok(environment) => Ok(environment),
        Err(message) => Err(ModelError::Invalid(message.clone())),
    }
}

/// The version string of the library (`1.31.0`), as its `OrtGetApiBase()->GetVersionString()`
/// says; read once.
pub fn version() -> Result<String> {
    static VERSION: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    VERSION
        .get_or_init(|| {
            let path = library_path().map_err(|e| e.to_string())?;
            read_version(&path).map_err(|e| format!("{}: {e}", path.display()))
        })
        .clone()
        .map_err(ModelError::Invalid)
}

fn read_version(path: &std::path::Path) -> std::result::Result<String, String> {
    // SAFETY: loading ONNX Runtime runs its initialisers, which have no preconditions; ort loads
    // the same file, and a second load of it only counts one more reference.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
    // SAFETY: `OrtGetApiBase` is ONNX Runtime's C entry point, of this signature in every release.
    let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
        unsafe { library.get(b"OrtGetApiBase") }.map_err(|e| e.to_string())?;
    // SAFETY: the symbol was found in the library just loaded, which stays loaded while it runs.
    let base = unsafe { get_base() };
    if base.is_null() {
        return Err("OrtGetApiBase returned null".into());
    }
    // SAFETY: `base` points at the library's static OrtApiBase, whose GetVersionString returns a
    // static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(((*base).GetVersionString)()) };
    Ok(version.to_string_lossy().into_owned())
}

/// One input of a run: its name and its values.
#[derive(Debug, Clone)]
pub enum Input {
    /// f32 values of a shape.
    F32(Vec<usize>, Vec<f32>),
    /// i64 values of a shape (token ids, masks).
    I64(Vec<usize>, Vec<i64>),
}

/// A graph loaded into ONNX Runtime with its inputs made once, ready to be run again and again.
pub struct OrtModel {
    session: Session,
    inputs: Vec<(String, DynValue)>,
}

impl OrtModel {
    /// Loads `graph` (an ONNX model's bytes) with `threads` intra-op threads, sequential
    /// execution and every graph optimisation, and makes `inputs` (by the graph's input names,
    /// in order) the values each run takes.
    pub fn new(graph: &[u8], threads: usize, inputs: Vec<Input>) -> Result<Self> {
        let environment = init()?;
        let session = Session::builder(environment)
            .map_err(|e| ort_err("session options", e))?
            .with_intra_threads(threads.max(1))
            .map_err(|e| ort_err("intra-op threads", e))?
            .with_inter_threads(1)
            .map_err(|e| ort_err("inter-op threads", e))?
            .with_parallel_execution(false)
            .map_err(|e| ort_err("sequential execution", e))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| ort_err("graph optimisation", e))?
            .commit_from_memory(graph)
            .map_err(|e| ort_err("loading the graph", e))?;
        let names: Vec<String> = session
            .inputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        if names.len() != inputs.len() {
            return Err(ModelError::Invalid(format!(
                "the graph takes {} inputs ({}), {} given",
                names.len(),
                names.join(", "),
                inputs.len()
            )));
        }
        let inputs = names
            .into_iter()
            .zip(inputs)
            .map(|(name, input)| Ok((name, make_value(input)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { session, inputs })
    }

    /// Runs the graph on its inputs: ONNX Runtime's outputs, unread.
    fn outputs(&mut self) -> Result<ort::session::SessionOutputs<'_>> {
        let inputs: Vec<(&str, &DynValue)> =
            self.inputs.iter().map(|(n, v)| (n.as_str(), v)).collect();
        self.session
            .run(inputs)
            .map_err(|e| ort_err("running the graph", e))
    }

    /// Runs the graph on its inputs and drops the outputs ONNX Runtime wrote without reading
    /// them: the timed call, which measures the inference and not a copy of its results (the own
    /// engine's timed call leaves its outputs in its buffers too).
    pub fn run_unread(&mut self) -> Result<()> {
        let outputs = self.outputs()?;
        std::hint::black_box(&outputs);
        Ok(())
    }

    /// Runs the graph on its inputs; returns each output's shape and values as f32 (integer
    /// outputs, such as class indices, converted).
    pub fn run(&mut self) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
        let outputs = self.outputs()?;
        outputs
            .iter()
            .map(|(name, value)| {
                let dims = |shape: &ort::value::Shape| -> Vec<usize> {
                    shape.iter().map(|d| (*d).max(0) as usize).collect()
                };
                if let Ok((shape, data)) = value.try_extract_tensor::<f32>() {
                    return Ok((dims(shape), data.to_vec()));
                }
                if let Ok((shape, data)) = value.try_extract_tensor::<i64>() {
                    return Ok((dims(shape), data.iter().map(|v| *v as f32).collect()));
                }
                Err(ModelError::Invalid(format!(
                    "ONNX Runtime: output {name} is of type {:?}; slimbench reads f32 and i64 \
                     outputs",
                    value.dtype()
                )))
            })
            .collect()
    }

    /// The graph's output names, in order.
    pub fn output_names(&self) -> Vec<String> {
        self.session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect()
    }

    /// Replaces the inputs each run takes (same names and order as the graph's).
    pub fn set_inputs(&mut self, inputs: Vec<Input>) -> Result<()> {
        for ((_, value), input) in self.inputs.iter_mut().zip(inputs) {
            *value = make_value(input)?;
        }
        Ok(())
    }
}

fn make_value(input: Input) -> Result<DynValue> {
    Ok(match input {
        Input::F32(shape, data) => Tensor::from_array((shape, data))
            .map_err(|e| ort_err("an f32 input", e))?
            .into_dyn(),
        Input::I64(shape, data) => Tensor::from_array((shape, data))
            .map_err(|e| ort_err("an i64 input", e))?
            .into_dyn(),
    })
}
