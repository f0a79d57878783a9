//! A run folder's layout: the names of its files (`run.json`, `results.jsonl`, `traces/`), the
//! trace file of each cell, and the one reader of its records, which checks every line's schema
//! version (see [`crate::results::read_records`]). Every command reaches a run folder through it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use slimbench_models::workload::Cell;

use crate::error::UsageError;
use crate::results::{read_records, Record};
use crate::runner::manifest::{shard_cells, Manifest};

/// The records file of a run folder.
pub const RESULTS_FILE: &str = "results.jsonl";
pub use crate::runner::manifest::MANIFEST_FILE;
/// The folder of the per-cell power traces.
pub const TRACES_DIR: &str = "traces";

/// A run folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run folder at `root` (nothing is read or created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `results.jsonl`: one record a finished cell.
    pub fn results_path(&self) -> PathBuf {
        self.root.join(RESULTS_FILE)
    }

    /// `rounds.jsonl`: one record a finished round of a cell, before the cell is combined.
    pub fn rounds_path(&self) -> PathBuf {
        self.root.join(crate::rounds::ROUNDS_FILE)
    }

    /// `run.json`: the plan and settings.
    pub fn manifest_path(&self) -> PathBuf {
        self.root.join(MANIFEST_FILE)
    }

    /// `traces/`: one power trace a measured cell.
    pub fn traces_dir(&self) -> PathBuf {
        self.root.join(TRACES_DIR)
    }

    /// `traces/<cell slug>.csv`.
    pub fn trace_path(&self, cell: &Cell) -> PathBuf {
        self.traces_dir().join(format!("{}.csv", cell_slug(cell)))
    }

    /// True when the folder holds a records file.
    pub fn has_results(&self) -> bool {
        self.results_path().exists()
    }

    /// Every record of the folder, checked line by line (schema, values, and, where the folder
    /// has a `run.json`, that the cell is in its plan and share); none when it has no records
    /// file yet.
    pub fn records(&self) -> Result<Vec<Record>, UsageError> {
        if !self.has_results() {
            return Ok(Vec::new());
        }
        let cells = if self.manifest_path().exists() {
            let manifest = Manifest::read(&self.root)?;
            Some(shard_cells(&manifest.plan, manifest.shard))
        } else {
            None
        };
        read_records(&self.results_path(), cells.as_deref())
    }

    /// The trace files (`traces/*.csv`), by file name; none when there is no trace folder.
    pub fn trace_files(&self) -> BTreeMap<String, PathBuf> {
        let mut files = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(self.traces_dir()) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "csv") {
                    files.insert(e.file_name().to_string_lossy().to_string(), p);
                }
            }
        }
        files
    }
}

/// The file-name form of a cell: `digits-mlp_q8_0_cpu_b32`, then each other dimension after its
/// letter (`_s128` with a sequence length), then an engine other than slimbench's (`_ort`).
pub fn cell_slug(key: &Cell) -> String {
    let dims: String = key
        .dims
        .iter()
        .map(|(d, v)| format!("_{}{v}", d.slug))
        .collect();
    // The own engine's cells keep the names they had before engines existed.
    let engine = if key.engine.is_default() {
        String::new()
    } else {
        format!("_{}", key.engine)
    };
    slug(&format!(
        "{}_{}_{}_b{}{dims}{engine}",
        key.model, key.technique, key.device, key.batch_size
    ))
}

/// `text` with every character but ASCII letters, digits, `-` and `_` replaced by `-`.
pub fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
