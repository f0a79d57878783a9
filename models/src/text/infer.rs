//! BERT inference on the CPU in slimbench's own buffers: an f32 Linear accumulates onto a buffer
//! that already holds its bias and residual, an int8 one adds them (and GELU) as it stores each
//! tile; attention reads the heads in place from the fused QKV output (on AVX-512 slimbench's
//! f32 tiles, each packing its panel of keys or values; the `gemm` crate elsewhere); GELU, softmax and layer norm run in the vectorised kernels of [`crate::kernels`]. The same
//! numbers as the candle-ops forward, within 1e-4.

use candle_core::Tensor;
use rayon::prelude::*;

use crate::error::Result;
use crate::kernels::elementwise::{layer_norm_rows_in_place, softmax_rows_in_place};
use crate::kernels::f32_tile::{self, Weights};
use crate::kernels::sgemm::{matmul_into, matmul_into_ptr, MatRef, Threads};
use crate::kernels::Isa;
use crate::row_linear::{linear_into, to_vec};
use crate::text::bert::{Bert, BertLayer, LayerNorm};
use crate::text::tokenize::Encoded;

fn layer_norm(x: &mut [f32], norm: &LayerNorm) -> Result<()> {
    layer_norm_rows_in_place(
        x,
        &to_vec(&norm.weight)?,
        &to_vec(&norm.bias)?,
        norm.eps as f32,
    );
    Ok(())
}

/// The shape of one batch: `batch` sequences of `tokens`.
#[derive(Debug, Clone, Copy)]
struct BatchShape {
    batch: usize,
    tokens: usize,
}

/// Scaled dot-product attention of every sequence and head, read from `qkv` (`rows x 3 width`:
/// queries, keys, values) and written into `context` (`rows x width`).
fn attention(
    qkv: &[f32],
    shape: BatchShape,
    heads: usize,
    head_dim: usize,
    mask_bias: &[f32],
    context: &mut Vec<f32>,
) {
    let BatchShape { batch, tokens: t } = shape;
    let width = heads * head_dim;
    let stride = 3 * width;
    context.resize(batch * t * width, 0.0);
    let scale = 1.0 / (head_dim as f32).sqrt();
    let context_addr = context.as_mut_ptr() as usize;
    (0..batch * heads).into_par_iter().for_each(|task| {
        let (b, h) = (task / heads, task % heads);
        let base = b * t * stride + h * head_dim;
        let view = |offset: usize| MatRef {
            data: &qkv[base + offset..],
            rows: t,
            cols: head_dim,
            row_stride: stride,
            col_stride: 1,
        };
        SCORES.with_borrow_mut(|scores| {
            if scores.len() < t * t {
                scores.resize(t * t, 0.0);
            }
            let scores = &mut scores[..t * t];
            let isa = Isa::get();
            let keys = Weights::Channels {
                data: &qkv[base + width..],
                stride,
            };
            // SAFETY: `scores` holds `t x t` and is this task's own.
            if !unsafe {
                f32_tile::product_into(isa, view(0), keys, t, scale, scores.as_mut_ptr(), t)
            } {
                matmul_into(
                    scores,
                    t,
                    view(0),
                    view(width).t(),
                    scale,
                    false,
                    Threads::One,
                );
            }
            softmax_rows_in_place(scores, t, &mask_bias[b * t..(b + 1) * t]);
            let context_at = (context_addr as *mut f32).wrapping_add(b * t * width + h * head_dim);
            let probabilities = MatRef::new(scores, t, t);
            let values = Weights::Inputs {
                data: &qkv[base + 2 * width..],
                stride,
            };
            // SAFETY: this task alone writes columns h*head_dim..(h+1)*head_dim of rows
            // b*t..(b+1)*t of `context`, which was sized above to hold them.
            unsafe {
                if !f32_tile::product_into(
                    isa,
                    probabilities,
                    values,
                    head_dim,
                    1.0,
                    context_at,
                    width,
                ) {
                    matmul_into_ptr(
                        context_at,
                        width,
                        probabilities,
                        view(2 * width),
                        1.0,
                        false,
                        Threads::One,
                    );
                }
            }
        });
    });
}

thread_local! {
    /// Each thread's attention scores (one head's `t x t`), kept from head to head so that they
    /// are not allocated and zeroed for each (12 heads of 64 KB a layer for MiniLM at batch 1);
    /// the score product overwrites all of them before softmax reads them. The attention task
    /// runs on one thread without handing work to rayon, so the buffer is never borrowed twice.
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Milliseconds spent in each phase of the forward pass (summed over layers), when asked for.
#[derive(Debug, Clone, Default)]
pub struct PhaseTimes {
    /// `(phase, ms)` in the order the phases first ran.
    pub phases: Vec<(&'static str, f64)>,
}

/// Times phases when profiling, and costs one branch a phase when not.
struct PhaseClock {
    times: Option<PhaseTimes>,
    last: std::time::Instant,
}

impl PhaseClock {
    fn new(profile: bool) -> Self {
        Self {
            times: profile.then(PhaseTimes::default),
            last: std::time::Instant::now(),
        }
    }

    /// Charges the time since the previous lap to `phase`.
    fn lap(&mut self, phase: &'static str) {
        if let Some(times) = &mut self.times {
            let now = std::time::Instant::now();
            let ms = (now - self.last).as_secs_f64() * 1e3;
            self.last = now;
            match times.phases.iter_mut().find(|(p, _)| *p == phase) {
                Some((_, total)) => *total += ms,
                None => times.phases.push((phase, ms)),
            }
        }
    }
}

/// Reusable buffers of one forward pass.
#[derive(Default)]
struct Buffers {
    qkv: Vec<f32>,
    context: Vec<f32>,
    attended: Vec<f32>,
    inner: Vec<f32>,
}

fn layer_forward(
    layer: &BertLayer,
    x: &mut Vec<f32>,
    shape: BatchShape,
    head_dim: usize,
    mask_bias: &[f32],
    buf: &mut Buffers,
    clock: &mut PhaseClock,
) -> Result<()> {
    let rows = shape.batch * shape.tokens;
    linear_into(&layer.qkv, x, rows, &mut buf.qkv, None, false)?;
    clock.lap("qkv projection");
    attention(
        &buf.qkv,
        shape,
        layer.heads,
        head_dim,
        mask_bias,
        &mut buf.context,
    );
    clock.lap("attention (scores, softmax, context)");
    linear_into(
        &layer.attn_out,
        &buf.context,
        rows,
        &mut buf.attended,
        Some(x),
        false,
    )?;
    clock.lap("attention output projection");
    layer_norm(&mut buf.attended, &layer.attn_norm)?;
    clock.lap("layer norms");
    linear_into(
        &layer.intermediate,
        &buf.attended,
        rows,
        &mut buf.inner,
        None,
        true,
    )?;
    clock.lap("up projection + GELU");
    linear_into(
        &layer.output,
        &buf.inner,
        rows,
        x,
        Some(&buf.attended),
        false,
    )?;
    clock.lap("down projection");
    layer_norm(x, &layer.out_norm)?;
    clock.lap("layer norms");
    Ok(())
}

/// Sentence embeddings `[batch, hidden]` of an encoded batch (mean of the real tokens' final
/// states, L2-normalised), computed on the CPU in slimbench's own buffers.
pub fn embed(bert: &Bert, input: &Encoded) -> Result<Tensor> {
    crate::kernels::on_pool(|| forward(bert, input, &mut PhaseClock::new(false)))
}

/// [`embed`], and where its time went, phase by phase (summed over the layers).
pub fn embed_profiled(bert: &Bert, input: &Encoded) -> Result<(Tensor, PhaseTimes)> {
    let mut clock = PhaseClock::new(true);
    let out = crate::kernels::on_pool(|| forward(bert, input, &mut clock))?;
    Ok((out, clock.times.unwrap_or_default()))
}

fn forward(bert: &Bert, input: &Encoded, clock: &mut PhaseClock) -> Result<Tensor> {
    let (batch, tokens) = input.ids.dims2()?;
    let hidden = bert.config.hidden_size;
    // Embeddings through candle (a gather and two adds), then the buffers take over.
    let mut x = to_vec(&bert.embedding_sum(input)?)?;
    layer_norm(&mut x, &bert.embed_norm)?;
    clock.lap("embeddings");
    let mask = to_vec(&input.mask)?;
    // 0 where a token is real, a large negative number where it is padding (as the candle path).
    let mask_bias: Vec<f32> = mask.iter().map(|m| (m - 1.0) * 1e4).collect();
    let shape = BatchShape { batch, tokens };
    let mut buffers = Buffers::default();
    for layer in &bert.layers {
        layer_forward(
            layer,
            &mut x,
            shape,
            bert.config.head_dim(),
            &mask_bias,
            &mut buffers,
            clock,
        )?;
    }
    let mut pooled = vec![0f32; batch * hidden];
    for b in 0..batch {
        let out = &mut pooled[b * hidden..(b + 1) * hidden];
        let mut count = 0f32;
        for t in 0..tokens {
            let m = mask[b * tokens + t];
            count += m;
            for (o, v) in out.iter_mut().zip(&x[(b * tokens + t) * hidden..]) {
                *o += m * v;
            }
        }
        let count = count.max(1e-9);
        out.iter_mut().for_each(|o| *o /= count);
        let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        out.iter_mut().for_each(|o| *o /= norm);
    }
    clock.lap("pooling");
    Ok(Tensor::from_vec(
        pooled,
        (batch, hidden),
        &candle_core::Device::Cpu,
    )?)
}

/// The forward pass a caller asks for: this module's own kernels for CPU inference, candle's
/// ops otherwise.
impl Bert {
    /// Sentence embeddings `[batch, hidden]`: mean of the real tokens' states, L2-normalised.
    /// Inference on the CPU runs slimbench's own kernels ([`crate::text::infer`]); training and
    /// other devices run candle's ops ([`Bert::embed_with_candle_ops`]).
    pub fn embed(&self, input: &Encoded, train: bool) -> Result<Tensor> {
        if !train && self.device().is_cpu() && input.ids.device().is_cpu() {
            return embed(self, input);
        }
        self.embed_with_candle_ops(input, train)
    }
}
