//! The engine benchmark of issues 10 and 19 under criterion: all-MiniLM-L6-v2 at 128 tokens, batch 1
//! and 32, fp32, int8 and the block formats q8_0, q4_0 and q4k, all on slimbench's kernels (the
//! instruction set as `SLIMBENCH_KERNELS` leaves it). Needs `slimbench fetch minilm`;
//! without the files it says so and measures nothing. Run beside `../shared/peer/run.sh`:
//! `cargo bench --bench engine` (threads follow `RAYON_NUM_THREADS`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use slimbench_models::kernels::blocks::BlockFormat;
use slimbench_models::linears::{int8, quantize};
use slimbench_models::text::bert::Bert;
use slimbench_models::text::tokenize::{Padding, TextTokenizer};
use slimbench_models::text::workload::{email_split, load_base, MINILM};

fn engine(c: &mut Criterion) {
    let base = match load_base(MINILM) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("engine bench skipped: all-MiniLM-L6-v2 is not fetched ({e}); run `cargo run --release -- fetch minilm`");
            return;
        }
    };
    let (mut tokenizer, split) = match (TextTokenizer::load(&base.files.tokenizer), email_split()) {
        (Ok(t), Ok(s)) => (t, s),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("engine bench skipped: {e}");
            return;
        }
    };
    let texts: Vec<&str> = split.test[..32].iter().map(|e| e.text.as_str()).collect();
    let fp32 = base.bert;
    let mut variants: Vec<(&str, Bert)> = vec![
        ("fp32", fp32.clone()),
        ("int8", int8(&fp32).expect("int8 variant").model),
    ];
    for format in [BlockFormat::Q8_0, BlockFormat::Q4_0, BlockFormat::Q4K] {
        let variant = quantize(&fp32, format).expect("block-format variant").model;
        variants.push((format.name(), variant));
    }
    let mut group = c.benchmark_group("minilm-128-tokens");
    for batch in [1usize, 32] {
        let input = tokenizer
            .encode(&texts[..batch], Padding::Fixed(128))
            .expect("encoded batch");
        for (name, bert) in &variants {
            group.bench_function(BenchmarkId::new(*name, batch), |b| {
                b.iter(|| bert.embed(&input, false).expect("forward"))
            });
        }
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(2))
        .measurement_time(std::time::Duration::from_secs(8))
        .sample_size(10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = engine
}
criterion_main!(benches);
