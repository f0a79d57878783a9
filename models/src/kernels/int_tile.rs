//! The operands of the integer tile kernels, shared by every instruction set's tile
//! (`kernels::x86`, `kernels::portable`) and by `qgemm`, which packs and dispatches them: a panel
//! of 32 output channels decoded to int8, the activations quantized per row and group, and the
//! tile's shape. A leaf: it calls no kernel.

/// Output channels of one sub-panel (one 512-bit vector of i32 sums).
pub(crate) const PANEL: usize = 16;
/// Output channels of one panel, the unit a task decodes and multiplies.
pub(crate) const TILE_COLS: usize = 2 * PANEL;
/// Rows of one tile of the kernel (6 x 2 accumulators, 6 x 2 f32 sums and the operands fit in
/// the 32 vector registers of AVX-512).
pub(crate) const TILE_ROWS: usize = 6;

/// Activations quantized per row and group: `q + 128` as u8.
pub(crate) struct QuantizedRows {
    /// `[rows][k_padded]`; padding holds 128 (zero).
    pub(crate) data: Vec<u8>,
    /// `[rows][groups]`: the scale of each group.
    pub(crate) scales: Vec<f32>,
    /// `[rows][groups]`: the scale times the sum of the group's `q` (for weights with minimums);
    /// empty when not asked for.
    pub(crate) scaled_sums: Vec<f32>,
    /// Inputs per row, padded.
    pub(crate) k_padded: usize,
    /// Inputs per group (a multiple of 4).
    pub(crate) group: usize,
    /// Groups per row.
    pub(crate) groups: usize,
}

/// One panel of 32 output channels, decoded to int8 (its layout: `qgemm`'s module documentation).
pub(crate) struct Panel<'a> {
    /// Sub-panel 0 at 0, sub-panel 1 at `sub_stride`; each `k_padded / 4` blocks of 64 bytes.
    pub(crate) data: &'a [i8],
    /// Bytes from the first sub-panel to the second.
    pub(crate) sub_stride: usize,
    /// Scale of channel `c` in group `g` at `g * stride + c`.
    pub(crate) scales: &'a [f32],
    /// `128 * sum(q)` of channel `c` in group `g` at `g * stride + c`.
    pub(crate) offsets: &'a [i32],
    /// The minimum added to each weight of channel `c` in group `g`, at `g * stride + c`.
    pub(crate) mins: Option<&'a [f32]>,
    /// `Some(bits)` when every weight is unsigned and below `2^bits` (the block formats but
    /// `q8_0`): the AVX2 path then multiplies without the sign trick and sums several
    /// `vpmaddubsw` results in i16 before widening (none can overflow).
    pub(crate) unsigned_bits: Option<u32>,
    /// Distance between groups in `scales`, `offsets` and `mins`.
    pub(crate) stride: usize,
}

impl Panel<'_> {
    /// Panics (like indexing) unless the panel covers `q`'s inputs.
    pub(crate) fn check(&self, q: &QuantizedRows) {
        let quads = q.k_padded / 4;
        assert!(
            self.data.len() >= self.sub_stride + quads * 64,
            "panel data"
        );
        assert!(self.sub_stride >= quads * 64, "panel stride");
        let need = (q.groups - 1) * self.stride + TILE_COLS;
        assert!(
            self.scales.len() >= need && self.offsets.len() >= need,
            "panel scales"
        );
        if let Some(m) = self.mins {
            assert!(
                m.len() >= need && q.scaled_sums.len() == q.scales.len(),
                "panel mins"
            );
        }
    }
}
