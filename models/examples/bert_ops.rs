//! Where a BERT layer's time goes: each operation of slimbench's MiniLM forward timed alone at
//! batch 1 x 128 tokens (hidden 384, 12 heads, FFN 1536), median of 50 runs, and its share of one
//! layer. `cargo run --release -p slimbench-models --example bert_ops`

use std::time::Instant;

use candle_core::{DType, Device, Tensor};

fn median_ms(mut f: impl FnMut() -> candle_core::Result<Tensor>) -> candle_core::Result<f64> {
    for _ in 0..5 {
        f()?;
    }
    let mut t: Vec<f64> = (0..50)
        .map(|_| {
            let s = Instant::now();
            f().map(|_| s.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<candle_core::Result<_>>()?;
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let (t, h, heads, f) = (128usize, 384usize, 12usize, 1536usize);
    let d = h / heads;
    let r = |shape: &[usize]| Tensor::randn(0f32, 1.0, shape, &dev);
    let x = r(&[t, h])?;
    let w_qkv = r(&[h, 3 * h])?;
    let w_o = r(&[h, h])?;
    let w_up = r(&[h, f])?;
    let w_down = r(&[f, h])?;
    let inner = r(&[t, f])?;
    let q = r(&[1, heads, t, d])?;
    let k_t = r(&[1, heads, d, t])?;
    let scores = r(&[1, heads, t, t])?;
    let gamma = Tensor::ones(h, DType::F32, &dev)?;
    let beta = Tensor::zeros(h, DType::F32, &dev)?;
    let qkv = x.matmul(&w_qkv)?;
    let ops: Vec<(&str, f64)> = vec![
        ("qkv matmul 128x384x1152", median_ms(|| x.matmul(&w_qkv))?),
        (
            "split heads (narrow, transpose, contiguous) x3",
            median_ms(|| {
                let a = qkv
                    .narrow(1, 0, h)?
                    .reshape((1, t, heads, d))?
                    .transpose(1, 2)?
                    .contiguous()?;
                let b = qkv
                    .narrow(1, h, h)?
                    .reshape((1, t, heads, d))?
                    .transpose(1, 2)?
                    .transpose(2, 3)?
                    .contiguous()?;
                let c = qkv
                    .narrow(1, 2 * h, h)?
                    .reshape((1, t, heads, d))?
                    .transpose(1, 2)?
                    .contiguous()?;
                (a + c)?.sum_all()?.broadcast_add(&b.sum_all()?)
            })?,
        ),
        ("scores q.k^T 12x128x32x128", median_ms(|| q.matmul(&k_t))?),
        (
            "softmax_last_dim 12x128x128",
            median_ms(|| candle_nn::ops::softmax_last_dim(&scores))?,
        ),
        (
            "context probs.v 12x128x128x32",
            median_ms(|| scores.matmul(&q))?,
        ),
        (
            "attention output matmul 128x384x384",
            median_ms(|| x.matmul(&w_o))?,
        ),
        (
            "layer_norm 128x384 (x2 per layer)",
            median_ms(|| candle_nn::ops::layer_norm(&x, &gamma, &beta, 1e-12))?,
        ),
        ("up matmul 128x384x1536", median_ms(|| x.matmul(&w_up))?),
        ("gelu_erf 128x1536", median_ms(|| inner.gelu_erf())?),
        ("gelu (tanh) 128x1536", median_ms(|| inner.gelu())?),
        (
            "down matmul 128x1536x384",
            median_ms(|| inner.matmul(&w_down))?,
        ),
        (
            "bias add 128x1536",
            median_ms(|| inner.broadcast_add(&r(&[f])?))?,
        ),
    ];
    let layer: f64 = ops
        .iter()
        .filter(|(n, _)| !n.starts_with("gelu (tanh)"))
        .map(|(n, ms)| {
            if n.starts_with("layer_norm") {
                2.0 * ms
            } else {
                *ms
            }
        })
        .sum();
    println!("{:<50} {:>9} {:>7}", "operation", "ms", "share");
    for (name, ms) in &ops {
        println!("{name:<50} {ms:>9.3} {:>6.1}%", 100.0 * ms / layer);
    }
    println!(
        "{:<50} {:>9.3}   (x6 layers = {:.1} ms)",
        "one layer (sum, tanh gelu excluded)",
        layer,
        6.0 * layer
    );
    Ok(())
}
