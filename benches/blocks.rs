//! The block-format kernels of issue 19 under criterion, beside f32 and `int8`, at the shapes
//! that matter: one-row products (the decode step of a language model: SmolLM2-135M's 576x1536,
//! 1536x576 and 576x49152, weights streamed from memory through enough copies to overflow the
//! caches) and 128-row products (MiniLM's 384x1536 at 128 tokens, compute-bound). Each figure is
//! one product. The instruction set is the widest the CPU has unless `SLIMBENCH_KERNELS=avx-vnni`, `avx2` or
//! `portable` narrows it; the bench prints which. `cargo bench --bench blocks` (threads follow
//! `RAYON_NUM_THREADS`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use slimbench_models::kernels::blocks::{BlockFormat, BlockMatrix};
use slimbench_models::kernels::epilogue::Epilogue;
use slimbench_models::kernels::int8::Int8Matrix;
use slimbench_models::kernels::linear::linear;
use slimbench_models::kernels::sgemm::MatRef;
use slimbench_models::kernels::{thread_count, Isa};
use slimbench_models::layer::INT8_GROUP;

/// Bytes the copies of one weight add up to, in every storage (far beyond any L3 cache).
const STREAMED_BYTES: usize = 256 << 20;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1f32..1.0)).collect()
}

/// One weight in every storage the bench compares.
enum Weight {
    F32(Vec<f32>),
    Int8(Int8Matrix),
    Blocks(BlockMatrix),
}

impl Weight {
    fn matmul(&self, x: &[f32], rows: usize, in_dim: usize, out_dim: usize, dst: &mut [f32]) {
        match self {
            Weight::F32(w) => linear(
                MatRef::new(x, rows, in_dim),
                w,
                out_dim,
                dst,
                Epilogue::default(),
            ),
            Weight::Int8(m) => m.matmul(x, rows, dst, Epilogue::default()),
            Weight::Blocks(m) => m.matmul(x, rows, dst, Epilogue::default()),
        }
    }
}

/// Each storage of one weight, in as many copies as `copies(bytes of one)` asks.
fn variants(
    out_dim: usize,
    in_dim: usize,
    copies: impl Fn(usize) -> usize,
) -> Vec<(String, Vec<Weight>)> {
    let w = random(out_dim * in_dim, 1);
    let mut out = vec![(
        "f32".to_string(),
        (0..copies(w.len() * 4))
            .map(|_| Weight::F32(w.clone()))
            .collect(),
    )];
    let int8 = Int8Matrix::quantize(&w, out_dim, in_dim, Some(INT8_GROUP));
    out.push((
        "int8".into(),
        (0..copies(int8.size_bytes()))
            .map(|_| Weight::Int8(int8.clone()))
            .collect(),
    ));
    for format in BlockFormat::ALL {
        if !in_dim.is_multiple_of(format.block_len()) {
            continue; // 576 is not a multiple of 256: no k-quant at that width
        }
        let m = BlockMatrix::quantize(&w, out_dim, in_dim, format).expect("quantized");
        let name = format!("{format:?}").to_lowercase();
        let n = copies(m.size_bytes());
        out.push((name, (0..n).map(|_| Weight::Blocks(m.clone())).collect()));
    }
    out
}

fn products(c: &mut Criterion) {
    eprintln!(
        "block kernels: instruction set {}, f32 on {}, {} threads",
        Isa::get().name(),
        slimbench_models::kernels::linear::kernel_name(),
        thread_count()
    );
    // One row: weights streamed from memory, a language model's decode step.
    for (out_dim, in_dim) in [(1536usize, 576usize), (576, 1536), (49152, 576)] {
        // Enough copies of each storage that they overflow the caches: each product reads its
        // weight from memory, as a decode step through 30 layers does.
        let copies = |bytes: usize| STREAMED_BYTES.div_ceil(bytes).max(2);
        let mut group = c.benchmark_group(format!("one-row-{out_dim}x{in_dim}"));
        group.throughput(Throughput::Elements(1));
        let x = random(in_dim, 2);
        let mut dst = vec![0f32; out_dim];
        for (name, weights) in variants(out_dim, in_dim, copies) {
            let mut next = 0;
            group.bench_function(BenchmarkId::from_parameter(&name), |b| {
                b.iter(|| {
                    weights[next].matmul(&x, 1, in_dim, out_dim, &mut dst);
                    next = (next + 1) % weights.len();
                })
            });
        }
        group.finish();
    }
    // 128 rows: compute-bound, MiniLM's feed-forward at 128 tokens.
    let (rows, out_dim, in_dim) = (128usize, 1536usize, 384usize);
    let mut group = c.benchmark_group(format!("rows-{rows}-{out_dim}x{in_dim}"));
    let x = random(rows * in_dim, 3);
    let mut dst = vec![0f32; rows * out_dim];
    for (name, weights) in variants(out_dim, in_dim, |_| 1) {
        group.bench_function(BenchmarkId::from_parameter(&name), |b| {
            b.iter(|| weights[0].matmul(&x, rows, in_dim, out_dim, &mut dst))
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = products
}
criterion_main!(benches);
