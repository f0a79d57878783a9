//! The engine-speed benchmark of issue 10: all-MiniLM-L6-v2 at 128 tokens, batch 1 and 32, in
//! each precision slimbench has (every GGML block format on slimbench's own kernels), with the fidelity of each to fp32 (mean cosine of the pooled
//! embeddings of 32 held-out emails). Run it beside `../shared/peer/run.sh` in the same session:
//! `cargo run --release -p slimbench-models --example minilm_engine [runs] [fp32,int8,...]`
//! (needs `slimbench fetch minilm`; threads follow `RAYON_NUM_THREADS`). `MINILM_BATCH1_ONLY=1`
//! times batch 1 alone (for a profiler: `perf record` then sees batch 1's time, not batch 32's).

use std::time::Instant;

use slimbench_models::kernels::blocks::BlockFormat;
use slimbench_models::kernels::{thread_count, Isa};
use slimbench_models::linears::{cast, int8, quantize};
use slimbench_models::technique::HalfType;
use slimbench_models::text::bert::{row_cosines, Bert};
use slimbench_models::text::tokenize::{Padding, TextTokenizer};
use slimbench_models::text::workload::{email_split, load_base, MINILM};

fn median_ms(bert: &Bert, input: &slimbench_models::text::tokenize::Encoded, runs: usize) -> f64 {
    for _ in 0..2 {
        bert.embed(input, false).expect("forward");
    }
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            bert.embed(input, false).expect("forward");
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() -> slimbench_models::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let only: Option<Vec<String>> = std::env::args()
        .nth(2)
        .map(|a| a.split(',').map(str::to_string).collect());
    let base = load_base(MINILM)?;
    let mut tokenizer = TextTokenizer::load(&base.files.tokenizer)?;
    let split = email_split()?;
    let texts: Vec<&str> = split.test[..32].iter().map(|e| e.text.as_str()).collect();
    let batch32 = tokenizer.encode(&texts, Padding::Fixed(128))?;
    let batch1 = tokenizer.encode(&texts[..1], Padding::Fixed(128))?;
    let fp32 = base.bert.clone();
    let reference = fp32.embed(&batch32, false)?;
    let mut variants: Vec<(&str, Bert)> =
        vec![("fp32", fp32.clone()), ("int8", int8(&fp32)?.model)];
    for format in BlockFormat::ALL {
        let name = format.name();
        if only.as_ref().is_none_or(|o| o.iter().any(|n| n == name)) {
            variants.push((name, quantize(&fp32, format)?.model));
        }
    }
    variants.push(("bf16", cast(&fp32, HalfType::Bf16)?.model));
    variants.push(("f16", cast(&fp32, HalfType::F16)?.model));
    println!(
        "all-MiniLM-L6-v2, 128 tokens, {} threads, kernels {} (f32 on {}, bf16 on {}, f16 on {}), median of {runs} runs",
        thread_count(),
        Isa::get().name(),
        slimbench_models::kernels::linear::kernel_name(),
        slimbench_models::kernels::bf16_tile::linear_kernel_name(),
        slimbench_models::kernels::linear::f16_kernel_name(),
    );
    let batch1_only = std::env::var_os("MINILM_BATCH1_ONLY").is_some_and(|v| v == "1");
    println!("| precision | batch 1 ms | batch 32 ms | fidelity |");
    println!("| --- | --- | --- | --- |");
    for (name, bert) in &variants {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == name)) {
            continue;
        }
        let b1 = median_ms(bert, &batch1, runs);
        let b32 = if batch1_only {
            "-".to_string()
        } else {
            format!("{:.0}", median_ms(bert, &batch32, (runs / 4).max(3)))
        };
        let cos = row_cosines(&reference, &bert.embed(&batch32, false)?)?;
        let fidelity = cos.iter().sum::<f32>() / cos.len() as f32;
        println!("| {name} | {b1:.1} | {b32} | {fidelity:.5} |");
    }
    Ok(())
}
