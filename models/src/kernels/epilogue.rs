//! What a matrix product adds to its sums as it stores them (bias, residual, GELU), so that its
//! output is written once and never read back.

use crate::kernels::elementwise::gelu_erf_in_place;

/// The additions and activation applied to each tile of a product as it is stored.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// One value per output channel, added to every row.
    pub bias: Option<&'a [f32]>,
    /// A `rows x out_dim` matrix added element-wise (a residual connection).
    pub residual: Option<&'a [f32]>,
    /// Apply the exact (erf) GELU last.
    pub gelu: bool,
}

impl Epilogue<'_> {
    /// Checks the epilogue's shapes against a `rows x out_dim` output (panics like indexing).
    pub(crate) fn check(&self, rows: usize, out_dim: usize) {
        if let Some(b) = self.bias {
            assert_eq!(b.len(), out_dim, "bias length");
        }
        if let Some(r) = self.residual {
            assert_eq!(r.len(), rows * out_dim, "residual shape");
        }
    }

    /// Stores `sums` (one array per row; the first `width` columns are real) into rows
    /// `row..row + sums.len()`, columns `col0..col0 + width` of `dst`, whose rows (and the
    /// residual's) lie `out_dim` elements apart.
    ///
    /// # Safety
    /// `dst` must hold those rows and columns, and no other thread may touch them meanwhile.
    pub(crate) unsafe fn store<const N: usize>(
        &self,
        sums: &[[f32; N]],
        dst: *mut f32,
        row: usize,
        col0: usize,
        width: usize,
        out_dim: usize,
    ) {
        if self.gelu && sums.len() <= GELU_TILE_ROWS {
            // SAFETY: the caller's promise, passed on.
            return unsafe { self.store_gelu(sums, dst, row, col0, width, out_dim) };
        }
        // SAFETY: the caller's promise, passed on.
        unsafe { self.store_strided(sums.as_flattened(), N, dst, row, col0, width, out_dim) }
    }

    /// [`store`](Self::store) for sums held in one slice, each row's `width` values `stride`
    /// apart (`stride >= width`): the one-row kernels gather a task's sums and store them once.
    ///
    /// # Safety
    /// As for [`store`](Self::store), for the `sums.len().div_ceil(stride)` rows.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn store_strided(
        &self,
        sums: &[f32],
        stride: usize,
        dst: *mut f32,
        row: usize,
        col0: usize,
        width: usize,
        out_dim: usize,
    ) {
        for (r, sums) in sums.chunks(stride).enumerate() {
            let at = (row + r) * out_dim + col0;
            // SAFETY: the caller's promise.
            let dst_row = unsafe { std::slice::from_raw_parts_mut(dst.add(at), width) };
            self.sum_row_into(dst_row, &sums[..width], at, col0);
            if self.gelu {
                gelu_erf_in_place(dst_row);
            }
        }
    }

    /// `dst = sums + bias + residual` for one row of a tile (`dst.len()` channels from `col0`;
    /// the residual's from element `at`), in one vectorised pass.
    fn sum_row_into(&self, dst: &mut [f32], sums: &[f32], at: usize, col0: usize) {
        let width = dst.len();
        let bias = self.bias.map_or(&[][..], |b| &b[col0..col0 + width]);
        let residual = self.residual.map_or(&[][..], |r| &r[at..at + width]);
        add_rows(dst, sums, bias, residual);
    }

    /// [`store`](Self::store) with GELU, for tiles of up to [`GELU_TILE_ROWS`] rows: bias and
    /// residual are added in a copy of the tile, GELU runs over the whole copy in one call, and
    /// the rows are copied out. One call over every row keeps the vector units busy where a row
    /// of 32 at a time left them waiting on each `erf`'s latency (MiniLM's up projection with
    /// GELU took 0.4 ms more than the down projection of as many multiply-adds).
    ///
    /// # Safety
    /// As for [`store`](Self::store).
    unsafe fn store_gelu<const N: usize>(
        &self,
        sums: &[[f32; N]],
        dst: *mut f32,
        row: usize,
        col0: usize,
        width: usize,
        out_dim: usize,
    ) {
        let mut tile = [[0f32; N]; GELU_TILE_ROWS];
        for (r, (t, sums)) in tile.iter_mut().zip(sums).enumerate() {
            self.sum_row_into(
                &mut t[..width],
                &sums[..width],
                (row + r) * out_dim + col0,
                col0,
            );
        }
        let rows = sums.len();
        gelu_erf_in_place(&mut tile[..rows].as_flattened_mut()[..(rows - 1) * N + width]);
        for (r, t) in tile[..rows].iter().enumerate() {
            let at = (row + r) * out_dim + col0;
            // SAFETY: the caller's promise.
            let dst_row = unsafe { std::slice::from_raw_parts_mut(dst.add(at), width) };
            dst_row.copy_from_slice(&t[..width]);
        }
    }
}

crate::kernels::multiversion! {
    /// `dst = sums + bias + residual` element-wise over `dst.len()` values, the additions in
    /// that order; an empty `bias` or `residual` is not added. Compiled per instruction set: a
    /// tile's row of 32 is two AVX-512 vectors, where the baseline build copied it, then added
    /// each term in a pass of its own.
    pub fn add_rows(dst: &mut [f32], sums: &[f32], bias: &[f32], residual: &[f32]) => add_rows_generic
}

#[inline(always)]
fn add_rows_generic(dst: &mut [f32], sums: &[f32], bias: &[f32], residual: &[f32]) {
    let sums = &sums[..dst.len()];
    match (bias.is_empty(), residual.is_empty()) {
        (true, true) => dst.copy_from_slice(sums),
        (false, true) => {
            for ((d, s), b) in dst.iter_mut().zip(sums).zip(&bias[..sums.len()]) {
                *d = s + b;
            }
        }
        (true, false) => {
            for ((d, s), r) in dst.iter_mut().zip(sums).zip(&residual[..sums.len()]) {
                *d = s + r;
            }
        }
        (false, false) => {
            let (bias, residual) = (&bias[..sums.len()], &residual[..sums.len()]);
            for (((d, s), b), r) in dst.iter_mut().zip(sums).zip(bias).zip(residual) {
                *d = s + b + r;
            }
        }
    }
}

/// Rows of the largest tile whose GELU epilogue runs in one call (the f32 tiles' 8).
const GELU_TILE_ROWS: usize = 8;

/// What every product's epilogue test checks: `matmul(x, rows, dst, epilogue)` with bias,
/// residual and GELU equals the plain product plus bias plus residual, then GELU, to 1e-6.
#[cfg(test)]
pub(crate) fn assert_fused_epilogue(
    rows: usize,
    in_dim: usize,
    out_dim: usize,
    random: impl Fn(usize, u64) -> Vec<f32>,
    matmul: impl Fn(&[f32], usize, &mut [f32], Epilogue<'_>),
) {
    let x = random(rows * in_dim, 9);
    let bias = random(out_dim, 10);
    let residual = random(rows * out_dim, 11);
    let mut plain = vec![0f32; rows * out_dim];
    matmul(&x, rows, &mut plain, Epilogue::default());
    let mut fused = vec![0f32; rows * out_dim];
    let epilogue = Epilogue {
        bias: Some(&bias),
        residual: Some(&residual),
        gelu: true,
    };
    matmul(&x, rows, &mut fused, epilogue);
    for (i, (p, f)) in plain.iter().zip(&fused).enumerate() {
        let mut want = [p + bias[i % out_dim] + residual[i]];
        gelu_erf_in_place(&mut want);
        assert!((f - want[0]).abs() < 1e-6, "{f} vs {}", want[0]);
    }
}
