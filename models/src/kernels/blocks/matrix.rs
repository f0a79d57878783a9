//! `BlockMatrix`: a weight matrix in a GGML block format, in GGML's bytes, with its products:
//! one to four rows through the interleaved or as-stored one-row kernels, more through panels of
//! 32 channels decoded to int8 once and kept.

use std::borrow::Cow;
use std::sync::OnceLock;

use candle_core::quantized::{QStorage, QTensor};
use candle_core::Device;
use rayon::prelude::*;

use super::gemv::gemv;
use super::interleaved;
use super::{dispatch, BlockFormat, Decoded, GgmlBlock};
use crate::error::{ModelError, Result};
use crate::kernels::epilogue::Epilogue;
use crate::kernels::isa::Isa;
use crate::kernels::qgemm::ONE_ROW_MAX_ROWS;
use crate::kernels::qgemm::{self, Panel, PanelSource, QuantizedRows, PANEL, TILE_COLS};

/// A weight matrix (`out x in`) in a GGML block format: row-major blocks, GGML's bytes. Products
/// of one to [`ONE_ROW_MAX_ROWS`] rows read a copy of the blocks interleaved eight channels at a
/// time (`q8_0`, `q4_0`, `q4_1`, `q5_0`, `q5_1`, `q4k` on the vector paths; built on the first
/// such product: as many bytes again, 3% more for `q4k`) or the blocks as stored (the other
/// formats, and the portable path); larger ones decode every panel of 32 channels to int8 once,
/// on the first such product, and keep the panels beside the blocks (as llama.cpp repacks its
/// weights at load): one byte a weight more in memory. Neither copy is on disk or in
/// `size_bytes`; both are in a run's peak memory.
#[derive(Debug, Clone)]
pub struct BlockMatrix {
    format: BlockFormat,
    out_dim: usize,
    in_dim: usize,
    data: Vec<u8>,
    panels: OnceLock<Vec<DecodedPanel>>,
    interleaved: OnceLock<Vec<u8>>,
}

/// One panel of 32 channels decoded to int8 (see `kernels::qgemm`).
#[derive(Debug, Clone, Default)]
pub(crate) struct DecodedPanel {
    data: Vec<i8>,
    scales: Vec<f32>,
    offsets: Vec<i32>,
    mins: Vec<f32>,
}

/// An error unless rows of `in_dim` weights split into whole blocks of `format`.
fn check_width(format: BlockFormat, in_dim: usize) -> Result<()> {
    if in_dim == 0 || !in_dim.is_multiple_of(format.block_len()) {
        return Err(ModelError::Invalid(format!(
            "a {format:?} weight needs an input width that is a multiple of {}, not {in_dim}",
            format.block_len()
        )));
    }
    Ok(())
}

impl BlockMatrix {
    /// Wraps GGML's bytes of a row-major `out_dim x in_dim` weight; an error says what does not
    /// fit (an input width that is not a multiple of the block, or the wrong byte count).
    pub fn from_bytes(
        format: BlockFormat,
        out_dim: usize,
        in_dim: usize,
        data: Vec<u8>,
    ) -> Result<Self> {
        check_width(format, in_dim)?;
        let want = out_dim * in_dim / format.block_len() * format.block_bytes();
        if data.len() != want {
            return Err(ModelError::Invalid(format!(
                "a {out_dim} x {in_dim} {format:?} weight takes {want} bytes, not {}",
                data.len()
            )));
        }
        Ok(Self {
            format,
            out_dim,
            in_dim,
            data,
            panels: OnceLock::new(),
            interleaved: OnceLock::new(),
        })
    }

    /// Quantizes a row-major `out_dim x in_dim` f32 weight with the format's quantizer (GGML's).
    pub fn quantize(
        weight: &[f32],
        out_dim: usize,
        in_dim: usize,
        format: BlockFormat,
    ) -> Result<Self> {
        check_width(format, in_dim)?;
        let data = format.quantize(weight, out_dim, in_dim)?;
        Self::from_bytes(format, out_dim, in_dim, data)
    }

    /// The blocks of a candle `QTensor` (`out x in`) in one of the formats above.
    pub fn from_qtensor(q: &QTensor) -> Result<Self> {
        let format = BlockFormat::from_ggml(q.dtype()).ok_or_else(|| {
            ModelError::Invalid(format!("slimbench has no block kernel for {:?}", q.dtype()))
        })?;
        let (out_dim, in_dim) = q.shape().dims2()?;
        Self::from_bytes(format, out_dim, in_dim, q.data()?.into_owned())
    }

    /// The same blocks as a candle `QTensor` on `device` (for candle's CUDA kernels).
    pub fn to_qtensor(&self, device: &Device) -> Result<QTensor> {
        let storage = QStorage::from_data(Cow::Borrowed(&self.data), device, self.format.ggml())?;
        Ok(QTensor::new(storage, (self.out_dim, self.in_dim))?)
    }

    /// The block format.
    pub fn format(&self) -> BlockFormat {
        self.format
    }

    /// Output channels.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// GGML's bytes, row-major blocks.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// Bytes of the stored blocks.
    pub fn size_bytes(&self) -> usize {
        self.data.len()
    }

    fn row_bytes(&self) -> usize {
        self.in_dim / self.format.block_len() * self.format.block_bytes()
    }

    /// The weight as f32, row-major `out x in`, equal bit for bit to candle's `dequantize`.
    pub fn dequantize(&self) -> Vec<f32> {
        let (len, bytes, group) = (
            self.format.block_len(),
            self.format.block_bytes(),
            self.format.group(),
        );
        let mins = self.format.has_mins();
        let mut out = vec![0f32; self.out_dim * self.in_dim];
        let mut dec = Decoded::default();
        dispatch!(self.format, B => {
            let decode = B::decode;
            for (block, y) in self.data.chunks_exact(bytes).zip(out.chunks_exact_mut(len)) {
                decode(block, &mut dec);
                for (i, (y, v)) in y.iter_mut().zip(&dec.vals).enumerate() {
                    *y = if mins {
                        *v as f32 * dec.scales[i / group] + dec.mins[i / group]
                    } else {
                        *v as f32 * dec.scales[i / group]
                    };
                }
            }
        });
        out
    }

    fn worth_threads(&self, rows: usize) -> bool {
        qgemm::worth_threads(rows, self.in_dim, self.out_dim)
    }

    /// `dst = epilogue(x W^T)` for `rows` rows of `x` (`rows x in_dim`) into `dst`
    /// (`rows x out_dim`): activations quantized per row and group, integer sums, each tile
    /// stored once with its bias, residual and GELU.
    pub fn matmul(&self, x: &[f32], rows: usize, dst: &mut [f32], epilogue: Epilogue<'_>) {
        assert_eq!(x.len(), rows * self.in_dim, "input shape");
        assert_eq!(dst.len(), rows * self.out_dim, "output shape");
        epilogue.check(rows, self.out_dim);
        if rows <= ONE_ROW_MAX_ROWS {
            return self.matmul_rows(x, rows, dst, epilogue, Isa::get());
        }
        let parallel = self.worth_threads(rows);
        let q = QuantizedRows::quantize(
            x,
            rows,
            self.in_dim,
            self.format.group(),
            self.format.panel_bits().is_some(),
            parallel,
        );
        qgemm::matmul(self, &q, rows, dst, epilogue, parallel);
    }

    /// The one-row product on `isa`'s path, row by row, 32 channels a task.
    pub(crate) fn matmul_rows(
        &self,
        x: &[f32],
        rows: usize,
        dst: &mut [f32],
        epilogue: Epilogue<'_>,
        isa: Isa,
    ) {
        if rows == 0 || self.out_dim == 0 {
            return;
        }
        let q = QuantizedRows::quantize(x, rows, self.in_dim, 32, true, false);
        let interleaved = (isa != Isa::portable() && interleaved::supports(self.format))
            .then(|| self.interleaved());
        let signed: Vec<i8> = match interleaved {
            Some(_) => q.data.iter().map(|&v| (v ^ 0x80) as i8).collect(),
            None => Vec::new(),
        };
        let tiles = self.out_dim.div_ceil(TILE_COLS);
        // Each task writes its own channels of each row: disjoint regions.
        let dst_addr = dst.as_mut_ptr() as usize;
        let run_task = |tile: usize| {
            let c0 = tile * TILE_COLS;
            let width = TILE_COLS.min(self.out_dim - c0);
            for row in 0..rows {
                let mut sums = [[0f32; TILE_COLS]];
                match interleaved {
                    Some(w) => {
                        let groups = row * q.groups..(row + 1) * q.groups;
                        let signed_row = interleaved::SignedRow {
                            values: &signed[row * q.k_padded..(row + 1) * q.k_padded],
                            scales: &q.scales[groups.clone()],
                            sums: &q.scaled_sums[groups],
                        };
                        interleaved::interleaved_gemv(
                            self.format,
                            w,
                            self.in_dim,
                            &signed_row,
                            c0 / interleaved::LANES,
                            &mut sums[0][..width],
                            isa,
                        );
                    }
                    None => gemv(self, &q, row, c0, &mut sums[0][..width], isa),
                }
                // SAFETY: row `row`, channels `c0..c0 + width` lie in `dst` and only this task
                // writes them.
                unsafe {
                    epilogue.store(&sums, dst_addr as *mut f32, row, c0, width, self.out_dim)
                };
            }
        };
        if self.worth_threads(rows) {
            (0..tiles).into_par_iter().for_each(run_task);
        } else {
            (0..tiles).for_each(run_task);
        }
    }

    /// The blocks interleaved eight channels at a time for the one-row kernels, on first use.
    fn interleaved(&self) -> &[u8] {
        self.interleaved.get_or_init(|| {
            interleaved::interleave(self.format, &self.data, self.out_dim, self.in_dim)
        })
    }

    /// Every panel decoded to int8, on first use.
    fn panels(&self) -> &[DecodedPanel] {
        self.panels.get_or_init(|| {
            (0..self.out_dim.div_ceil(TILE_COLS))
                .into_par_iter()
                .map(|tile| {
                    let mut p = DecodedPanel::default();
                    self.decode_panel(tile, &mut p);
                    p
                })
                .collect()
        })
    }

    /// Decodes channels `32 * tile ..` into `p` in the kernel's panel layout.
    fn decode_panel(&self, tile: usize, p: &mut DecodedPanel) {
        let (len, bytes, group) = (
            self.format.block_len(),
            self.format.block_bytes(),
            self.format.group(),
        );
        let sub_stride = self.in_dim / 4 * 64;
        let groups = self.in_dim / group;
        let per_block = len / group;
        p.data.clear();
        p.data.resize(2 * sub_stride, 0);
        for v in [&mut p.scales, &mut p.mins] {
            v.clear();
            v.resize(groups * TILE_COLS, 0.0);
        }
        p.offsets.clear();
        p.offsets.resize(groups * TILE_COLS, 0);
        let col0 = tile * TILE_COLS;
        let row_bytes = self.row_bytes();
        let offset = self.format.value_offset();
        let mut dec = Decoded::default();
        dispatch!(self.format, B => {
            let decode = B::decode;
            for c in 0..TILE_COLS.min(self.out_dim - col0) {
                let row = &self.data[(col0 + c) * row_bytes..(col0 + c + 1) * row_bytes];
                let lane = (c / PANEL) * sub_stride + (c % PANEL) * 4;
                for (b, block) in row.chunks_exact(bytes).enumerate() {
                    decode(block, &mut dec);
                    if offset != 0 {
                        // Unsigned values, the offset moved into the minimum (see `value_offset`).
                        for v in &mut dec.vals[..len] {
                            *v += offset;
                        }
                        for g in 0..per_block {
                            dec.mins[g] = -(offset as f32) * dec.scales[g];
                        }
                    }
                    for gi in 0..per_block {
                        let at = (b * per_block + gi) * TILE_COLS + c;
                        let span = &dec.vals[gi * group..(gi + 1) * group];
                        p.scales[at] = dec.scales[gi];
                        p.mins[at] = dec.mins[gi];
                        p.offsets[at] = 128 * span.iter().map(|&v| v as i32).sum::<i32>();
                    }
                    let k0 = b * len;
                    for (j, four) in dec.vals[..len].chunks_exact(4).enumerate() {
                        let at = lane + (k0 / 4 + j) * 64;
                        p.data[at..at + 4].copy_from_slice(four);
                    }
                }
            }
        });
    }
}

impl PanelSource for BlockMatrix {
    type Scratch = ();

    fn out_dim(&self) -> usize {
        self.out_dim
    }

    fn panel<'a>(&'a self, tile: usize, _scratch: &'a mut ()) -> Panel<'a> {
        let scratch = &self.panels()[tile];
        Panel {
            data: &scratch.data,
            sub_stride: self.in_dim / 4 * 64,
            scales: &scratch.scales,
            offsets: &scratch.offsets,
            mins: self.format.panel_bits().map(|_| &scratch.mins[..]),
            unsigned_bits: self.format.panel_bits(),
            stride: TILE_COLS,
        }
    }
}
