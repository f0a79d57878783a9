//! Times SmolLM2's prefill and decode steps for each technique named on the command line (no
//! energy, no quality): `cargo run --release -p slimbench-models --example smollm2_decode -- fp32 q4_0`.
//! `SMOLLM2_PROMPT` sets the prompt's length (128), `SMOLLM2_REPS` the repetitions (4),
//! `SMOLLM2_DECODE` the decode steps after each prefill (64; 0 times prefill alone, for a profile).
//! Needs `slimbench fetch smollm2`. For A/B comparisons of the kernels; `slimbench run` is the
//! measurement of record.

use std::time::Instant;

use slimbench_models::fetch::models_dir;
use slimbench_models::linears::apply_post_step;
use slimbench_models::llm::fetch::smollm2_path;
use slimbench_models::llm::infer::{forward, KvCache, Logits};
use slimbench_models::llm::load_gguf;
use slimbench_models::technique::Technique;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (base, _, _) = load_gguf(&smollm2_path(&models_dir()))?;
    let prompt_len: usize = std::env::var("SMOLLM2_PROMPT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let prompt: Vec<u32> = (0..prompt_len)
        .map(|i| 100 + (i * 31 % 5000) as u32)
        .collect();
    for name in std::env::args().skip(1) {
        let technique: Technique = name.parse()?;
        let model = match technique.post() {
            Some(step) => apply_post_step(&base, step, &name)?.model,
            None => base.clone(),
        };
        let steps: u32 = std::env::var("SMOLLM2_DECODE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64);
        let mut cache = KvCache::new(&model, prompt_len + steps as usize);
        let mut prefill = Vec::new();
        let mut decode = Vec::new();
        let reps: usize = std::env::var("SMOLLM2_REPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4);
        for _ in 0..reps {
            cache.truncate(0);
            let t = Instant::now();
            forward(&model, &prompt, &mut cache, Logits::Last)?;
            prefill.push(t.elapsed().as_secs_f64() * 1e3);
            for i in 0..steps {
                let t = Instant::now();
                forward(&model, &[200 + i], &mut cache, Logits::Last)?;
                decode.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        let (p, d) = (median(prefill), median(decode));
        println!(
            "{name:>10}: prefill {p:7.1} ms ({:6.1} tok/s), decode {d:6.2} ms ({:6.1} tok/s)",
            prompt_len as f64 * 1e3 / p,
            1e3 / d
        );
    }
    Ok(())
}
