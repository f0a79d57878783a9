//! Text models: BERT-family sentence encoders (all-MiniLM-L6-v2 and user checkpoints in the same
//! layout), their files, tokenizer, compression, quality tasks and fetching.

pub mod bert;
pub mod compress;
pub mod config;
pub mod fetch;
pub mod files;
pub mod infer;
pub mod probe;
pub mod tiny;
pub mod tokenize;
pub mod workload;
