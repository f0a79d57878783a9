//! A Linear (`y = x W^T + b`, `W` `out x in`) written into an ONNX graph in each format ONNX
//! Runtime runs: f32 `MatMul`; f16 weights cast to f32; int8 dynamic as `onnxruntime.quantization.quantize_dynamic`
//! writes it (`DynamicQuantizeLinear` + `MatMulInteger`, int8 weights symmetric per tensor);
//! 4-bit weight-only as `com.microsoft` `MatMulNBits` (blocks of 32 along the inputs, GGML's
//! `q4_0` rounding without zero points, ONNX Runtime's asymmetric rounding with 4-bit zero
//! points as the `q4_1` analogue).

use crate::error::{ModelError, Result};
use crate::kernels::blocks::BlockFormat;
use crate::onnx::graph::{Attr, GraphBuilder, MICROSOFT};
use crate::onnx::proto::tensor_proto::DataType;
use crate::technique::{HalfType, PostStep, Technique};

/// Inputs a `MatMulNBits` block covers.
pub const NBITS_BLOCK: usize = 32;
/// `MatMulNBits`' `accuracy_level`: 4 multiplies int8-quantized activations by the unpacked
/// weights (as llama.cpp multiplies `q4_0` by `q8_0` activations); recorded with the cell.
pub const NBITS_ACCURACY_LEVEL: i64 = 4;

/// How a Linear is written for ONNX Runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnnxFormat {
    /// f32 weights, `MatMul`.
    F32,
    /// f16 weights stored in the graph, cast to f32 before the `MatMul` (ONNX Runtime folds the
    /// cast when it loads the graph: the file is half the size, the product runs in f32).
    F16,
    /// int8 weights (symmetric, one scale per tensor) times activations quantized per tensor at
    /// run time (uint8 with a zero point): `DynamicQuantizeLinear` + `MatMulInteger`.
    Int8Dynamic,
    /// 4-bit weights in blocks of 32 (`MatMulNBits`); with zero points or without.
    Q4 {
        /// Asymmetric blocks with a 4-bit zero point each (`q4_1`'s analogue), else `q4_0`'s
        /// symmetric rounding (zero point 8).
        zero_points: bool,
    },
}

impl OnnxFormat {
    /// The format a technique's post-training step asks for on ONNX Runtime; training steps
    /// (pruning, distillation) change the f32 weights the graph is written from and need no
    /// format of their own. A step ONNX Runtime has no operator for is `not-applicable`.
    pub fn of(technique: &Technique) -> Result<Self> {
        match technique.post() {
            None | Some(PostStep::PruneOneShot { .. }) => Ok(Self::F32),
            Some(PostStep::Int8) => Ok(Self::Int8Dynamic),
            Some(PostStep::Cast {
                dtype: HalfType::F16,
            }) => Ok(Self::F16),
            Some(PostStep::Quantize {
                format,
                embeddings: false,
            }) if *format == BlockFormat::Q4_0 => Ok(Self::Q4 { zero_points: false }),
            Some(PostStep::Quantize {
                format,
                embeddings: false,
            }) if *format == BlockFormat::Q4_1 => Ok(Self::Q4 { zero_points: true }),
            Some(other) => Err(ModelError::NotApplicable(format!(
                "{technique}: the ort engine writes f32, f16 weights, int8 dynamic \
                 (MatMulInteger) and 4-bit MatMulNBits (q4_0, q4_1) Linears; ONNX Runtime's CPU \
                 provider has no operator for {} weights",
                post_name(other)
            ))),
        }
    }

    /// The format's name in records (`f32`, `int8-dynamic`, `q4-nbits`, `q4-nbits-zp`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16-weights",
            Self::Int8Dynamic => "int8-dynamic",
            Self::Q4 { zero_points: false } => "q4-nbits",
            Self::Q4 { zero_points: true } => "q4-nbits-zp",
        }
    }

    /// The ONNX operators a Linear of this format runs as, for the record.
    pub fn operators(&self) -> &'static str {
        match self {
            Self::F32 => "MatMul + Add",
            Self::F16 => "Cast (f16 to f32, folded at load) + MatMul + Add",
            Self::Int8Dynamic => "DynamicQuantizeLinear + MatMulInteger + Cast + Mul + Add",
            Self::Q4 { .. } => {
                "com.microsoft MatMulNBits (bits 4, block 32, accuracy level 4) + Add"
            }
        }
    }

    /// Bytes a Linear of `out x in` takes in this format, bias included (f32).
    pub fn bytes(&self, out: usize, inputs: usize) -> usize {
        let blocks = inputs.div_ceil(NBITS_BLOCK);
        out * 4
            + match self {
                Self::F32 => out * inputs * 4,
                Self::F16 => out * inputs * 2,
                Self::Int8Dynamic => out * inputs + 4 + 1,
                Self::Q4 { zero_points } => {
                    out * blocks * (NBITS_BLOCK / 2 + 4)
                        + if *zero_points {
                            out * blocks.div_ceil(2)
                        } else {
                            0
                        }
                }
            }
    }
}

fn post_name(step: &PostStep) -> String {
    match step {
        PostStep::Quantize {
            format,
            embeddings: true,
        } => format!("{}-all (token embeddings in blocks)", format.name()),
        PostStep::Quantize { format, .. } => format.name().to_string(),
        PostStep::Cast { dtype } => format!("{dtype:?}").to_lowercase(),
        PostStep::Int8 => "int8".into(),
        PostStep::PruneOneShot { .. } => "pruned".into(),
    }
}

/// A Linear's f32 parameters, borrowed: the weight `out x in` row-major and the bias.
#[derive(Debug, Clone, Copy)]
pub struct LinearParams<'a> {
    /// The layer's name, for the graph's value names.
    pub name: &'a str,
    /// Output width.
    pub out: usize,
    /// Input width.
    pub inputs: usize,
    /// The weight, `out x in`, row-major.
    pub weight: &'a [f32],
    /// The bias, length `out`; empty for none (a bare `MatMul`).
    pub bias: &'a [f32],
}

/// Writes `x W^T + b` into `g` in `format` (`x W^T` without a bias); returns the output's name. `x`'s last dimension is
/// the input width (any leading dimensions).
pub fn emit(g: &mut GraphBuilder, x: &str, p: LinearParams<'_>, format: OnnxFormat) -> String {
    let product = match format {
        OnnxFormat::F32 => {
            let w = g.initializer_f32(
                &format!("{}.weight_t", p.name),
                &[p.inputs, p.out],
                &transpose(p),
            );
            g.node("MatMul", &[x, &w], vec![])
        }
        OnnxFormat::F16 => {
            let bytes = transpose(p)
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect();
            let w16 = g.initializer_raw(
                &format!("{}.weight_t_f16", p.name),
                DataType::Float16,
                &[p.inputs, p.out],
                bytes,
            );
            let w = g.node(
                "Cast",
                &[&w16],
                vec![("to", Attr::Int(DataType::Float as i64))],
            );
            g.node("MatMul", &[x, &w], vec![])
        }
        OnnxFormat::Int8Dynamic => emit_int8_dynamic(g, x, p),
        OnnxFormat::Q4 { zero_points } => emit_nbits(g, x, p, zero_points),
    };
    if p.bias.is_empty() {
        return product;
    }
    let b = g.initializer_f32(&format!("{}.bias", p.name), &[p.out], p.bias);
    g.node("Add", &[&product, &b], vec![])
}

fn transpose(p: LinearParams<'_>) -> Vec<f32> {
    let mut t = vec![0.0; p.weight.len()];
    for o in 0..p.out {
        for i in 0..p.inputs {
            t[i * p.out + o] = p.weight[o * p.inputs + i];
        }
    }
    t
}

/// Round half to even, as numpy's `round` (which `quantize_dynamic` uses).
fn round_even(v: f32) -> f32 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - v.signum()
    } else {
        r
    }
}

fn emit_int8_dynamic(g: &mut GraphBuilder, x: &str, p: LinearParams<'_>) -> String {
    let amax = p.weight.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = if amax > 0.0 { amax / 127.0 } else { 1.0 };
    let q: Vec<u8> = transpose(p)
        .iter()
        .map(|v| round_even(v / scale).clamp(-127.0, 127.0) as i8 as u8)
        .collect();
    let w = g.initializer_raw(
        &format!("{}.weight_q", p.name),
        DataType::Int8,
        &[p.inputs, p.out],
        q,
    );
    let w_zero = g.initializer_raw(
        &format!("{}.weight_zero", p.name),
        DataType::Int8,
        &[],
        vec![0],
    );
    let w_scale = g.initializer_f32(&format!("{}.weight_scale", p.name), &[], &[scale]);
    let quant = g.node_in("", "DynamicQuantizeLinear", &[x], 3, vec![]);
    let (xq, x_scale, x_zero) = (&quant[0], &quant[1], &quant[2]);
    let ints = g.node("MatMulInteger", &[xq, &w, x_zero, &w_zero], vec![]);
    let floats = g.node(
        "Cast",
        &[&ints],
        vec![("to", Attr::Int(DataType::Float as i64))],
    );
    let scale = g.node("Mul", &[x_scale, &w_scale], vec![]);
    g.node("Mul", &[&floats, &scale], vec![])
}

/// One block of up to 32 weights quantized to 4 bits: the values 0..15 and the block's scale
/// and zero point.
fn quantize_block(values: &[f32], zero_points: bool) -> ([u8; NBITS_BLOCK], f32, u8) {
    let mut q = [0u8; NBITS_BLOCK];
    if zero_points {
        // ONNX Runtime's asymmetric rounding: the range always holds 0, so that zero is exact.
        let min = values.iter().fold(0.0f32, |m, v| m.min(*v));
        let max = values.iter().fold(0.0f32, |m, v| m.max(*v));
        let scale = (max - min) / 15.0;
        let zp = if scale > 0.0 {
            (-min / scale).round().clamp(0.0, 15.0)
        } else {
            0.0
        };
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        for (slot, v) in q.iter_mut().zip(values) {
            *slot = (v * inv + zp).round().clamp(0.0, 15.0) as u8;
        }
        for slot in q.iter_mut().skip(values.len()) {
            *slot = zp as u8;
        }
        (q, scale, zp as u8)
    } else {
        // GGML's q4_0: the value of largest magnitude maps to -8, scale d = max / -8.
        let max = values
            .iter()
            .fold(0.0f32, |m, v| if v.abs() > m.abs() { *v } else { m });
        let d = max / -8.0;
        let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (slot, v) in q.iter_mut().zip(values) {
            *slot = ((v * inv + 8.5) as i32).clamp(0, 15) as u8;
        }
        for slot in q.iter_mut().skip(values.len()) {
            *slot = 8;
        }
        (q, d, 8)
    }
}

fn emit_nbits(g: &mut GraphBuilder, x: &str, p: LinearParams<'_>, zero_points: bool) -> String {
    let blocks = p.inputs.div_ceil(NBITS_BLOCK);
    let blob = NBITS_BLOCK / 2;
    let mut packed = vec![0u8; p.out * blocks * blob];
    let mut scales = vec![0.0f32; p.out * blocks];
    let zp_row = blocks.div_ceil(2);
    let mut zps = vec![0u8; p.out * zp_row];
    for o in 0..p.out {
        let row = &p.weight[o * p.inputs..(o + 1) * p.inputs];
        for b in 0..blocks {
            let chunk = &row[b * NBITS_BLOCK..((b + 1) * NBITS_BLOCK).min(p.inputs)];
            let (q, scale, zp) = quantize_block(chunk, zero_points);
            scales[o * blocks + b] = scale;
            let dst = &mut packed[(o * blocks + b) * blob..(o * blocks + b + 1) * blob];
            for (j, byte) in dst.iter_mut().enumerate() {
                *byte = q[2 * j] | (q[2 * j + 1] << 4);
            }
            zps[o * zp_row + b / 2] |= zp << (4 * (b % 2));
        }
    }
    let w = g.initializer_raw(
        &format!("{}.weight_q4", p.name),
        DataType::Uint8,
        &[p.out, blocks, blob],
        packed,
    );
    let s = g.initializer_f32(
        &format!("{}.weight_scales", p.name),
        &[p.out * blocks],
        &scales,
    );
    let mut inputs = vec![x.to_string(), w, s];
    if zero_points {
        inputs.push(g.initializer_raw(
            &format!("{}.weight_zero_points", p.name),
            DataType::Uint8,
            &[p.out * zp_row],
            zps,
        ));
    }
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    g.node_in(
        MICROSOFT,
        "MatMulNBits",
        &refs,
        1,
        vec![
            ("K", Attr::Int(p.inputs as i64)),
            ("N", Attr::Int(p.out as i64)),
            ("bits", Attr::Int(4)),
            ("block_size", Attr::Int(NBITS_BLOCK as i64)),
            ("accuracy_level", Attr::Int(NBITS_ACCURACY_LEVEL)),
        ],
    )
    .remove(0)
}

/// The weight each format's graph multiplies by, dequantized (`out x in`): what a test checks the
/// graph's output against.
pub fn dequantized(p: LinearParams<'_>, format: OnnxFormat) -> Vec<f32> {
    match format {
        OnnxFormat::F32 => p.weight.to_vec(),
        OnnxFormat::F16 => p
            .weight
            .iter()
            .map(|v| half::f16::from_f32(*v).to_f32())
            .collect(),
        OnnxFormat::Int8Dynamic => {
            let amax = p.weight.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = if amax > 0.0 { amax / 127.0 } else { 1.0 };
            p.weight
                .iter()
                .map(|v| round_even(v / scale).clamp(-127.0, 127.0) * scale)
                .collect()
        }
        OnnxFormat::Q4 { zero_points } => {
            let mut out = Vec::with_capacity(p.weight.len());
            for row in p.weight.chunks(p.inputs) {
                for chunk in row.chunks(NBITS_BLOCK) {
                    let (q, scale, zp) = quantize_block(chunk, zero_points);
                    out.extend(
                        q[..chunk.len()]
                            .iter()
                            .map(|v| (*v as f32 - zp as f32) * scale),
                    );
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_without_zero_points_rounds_as_ggml_q4_0_and_keeps_the_largest_value() {
        let values: Vec<f32> = (0..32).map(|i| (i as f32 - 10.0) * 0.25).collect();
        let (q, d, zp) = quantize_block(&values, false);
        assert_eq!(zp, 8);
        // The largest magnitude (+5.25) maps to -8 * d exactly.
        assert_eq!((q[31] as f32 - 8.0) * d, 5.25);
        for (v, q) in values.iter().zip(q) {
            assert!(((q as f32 - 8.0) * d - v).abs() <= d.abs() / 2.0 + 1e-6);
        }
    }

    #[test]
    fn q4_with_zero_points_keeps_zero_exact_and_every_value_within_half_a_step() {
        let values: Vec<f32> = (0..20).map(|i| i as f32 * 0.3 - 1.0).collect();
        let (q, scale, zp) = quantize_block(&values, true);
        for (v, q) in values.iter().zip(q) {
            assert!(((q as f32 - zp as f32) * scale - v).abs() <= scale / 2.0 + 1e-6);
        }
        // Padding past a ragged block's end decodes to zero.
        assert!(q[20..].iter().all(|v| *v == zp));
    }

    #[test]
    fn int8_dynamic_rounds_half_to_even_as_numpy() {
        assert_eq!(round_even(2.5), 2.0);
        assert_eq!(round_even(3.5), 4.0);
        assert_eq!(round_even(-2.5), -2.0);
        assert_eq!(round_even(1.2), 1.0);
    }
}
