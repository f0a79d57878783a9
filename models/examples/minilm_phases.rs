//! Where MiniLM's CPU inference time goes, phase by phase (summed over the six layers), for fp32
//! and int8 at batch 1 and 32 x 128 tokens: the profile behind issue 10's note.
//! `cargo run --release -p slimbench-models --example minilm_phases [runs]` (after `fetch minilm`).

use slimbench_models::linears::int8;
use slimbench_models::text::infer::embed_profiled;
use slimbench_models::text::tokenize::{Padding, TextTokenizer};
use slimbench_models::text::workload::{email_split, load_base, MINILM};

fn main() -> slimbench_models::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let base = load_base(MINILM)?;
    let mut tokenizer = TextTokenizer::load(&base.files.tokenizer)?;
    let split = email_split()?;
    let texts: Vec<&str> = split.test[..32].iter().map(|e| e.text.as_str()).collect();
    let int8 = int8(&base.bert)?.model;
    for (name, bert) in [("fp32", &base.bert), ("int8", &int8)] {
        for batch in [1usize, 32] {
            let input = tokenizer.encode(&texts[..batch], Padding::Fixed(128))?;
            embed_profiled(bert, &input)?;
            // The median run by total time, so one slow run does not skew a phase.
            let mut all = (0..runs)
                .map(|_| embed_profiled(bert, &input).map(|(_, t)| t))
                .collect::<slimbench_models::Result<Vec<_>>>()?;
            let total = |t: &slimbench_models::text::infer::PhaseTimes| -> f64 {
                t.phases.iter().map(|(_, ms)| ms).sum()
            };
            all.sort_by(|a, b| total(a).total_cmp(&total(b)));
            let median = &all[all.len() / 2];
            println!("{name} batch {batch}x128: {:.1} ms", total(median));
            for (phase, ms) in &median.phases {
                println!(
                    "  {phase:<38} {ms:>8.2} ms  {:>5.1}%",
                    100.0 * ms / total(median)
                );
            }
        }
    }
    Ok(())
}
