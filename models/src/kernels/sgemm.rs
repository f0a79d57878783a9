//! f32 matrix products into a caller's buffer through the `gemm` crate (the kernels candle itself
//! uses on the CPU), with strides, so attention reads heads in place and a Linear's bias and
//! residual are fused by accumulating onto a pre-filled destination.

/// A row-major f32 matrix view: `rows x cols`, consecutive rows `row_stride` elements apart and
/// consecutive columns `col_stride` apart (so a transpose is a view, not a copy).
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    /// The elements the view reads.
    pub data: &'a [f32],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Elements between the starts of consecutive rows.
    pub row_stride: usize,
    /// Elements between consecutive columns of a row.
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A contiguous row-major `rows x cols` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, as a view.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn last_index(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            return 0;
        }
        (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
    }
}

/// How many threads one product may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// The caller's thread only (the caller parallelises at a coarser grain).
    One,
    /// Up to this many rayon threads.
    Up(usize),
}

/// `dst = accumulate * dst + scale * a b` for row-major `dst` (`a.rows x b.cols`, rows
/// `dst_row_stride` apart). Panics, like slice indexing, if a view or `dst` is too short for its
/// shape or the inner dimensions differ: callers size their buffers from the same shapes.
pub fn matmul_into(
    dst: &mut [f32],
    dst_row_stride: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    scale: f32,
    accumulate: bool,
    threads: Threads,
) {
    if a.rows == 0 || b.cols == 0 {
        return;
    }
    assert!(
        dst.len() >= (a.rows - 1) * dst_row_stride + b.cols,
        "destination out of bounds"
    );
    // SAFETY: the destination region lies inside `dst` (asserted above), which is borrowed
    // mutably, so nothing else reads or writes it.
    unsafe {
        matmul_into_ptr(
            dst.as_mut_ptr(),
            dst_row_stride,
            a,
            b,
            scale,
            accumulate,
            threads,
        )
    }
}

/// [`matmul_into`] through a raw destination, for threads that each write their own columns of
/// one buffer (the heads of attention).
///
/// # Safety
/// `dst` must be valid for reads and writes of `a.rows` rows of `b.cols` elements,
/// `dst_row_stride` apart, and no other thread may touch those elements during the call.
pub(crate) unsafe fn matmul_into_ptr(
    dst: *mut f32,
    dst_row_stride: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    scale: f32,
    accumulate: bool,
    threads: Threads,
) {
    assert_eq!(a.cols, b.rows, "inner dimensions of a matrix product");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        a.data.len() > a.last_index() || k == 0,
        "lhs view out of bounds"
    );
    assert!(
        b.data.len() > b.last_index() || k == 0,
        "rhs view out of bounds"
    );
    let parallelism = match threads {
        Threads::Up(t) if t > 1 => gemm::Parallelism::Rayon(t),
        _ => gemm::Parallelism::None,
    };
    // SAFETY: the sources' indices lie inside their slices (asserted above); the destination is
    // the caller's promise.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f64> {
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                out[i * b.cols + j] = (0..a.cols)
                    .map(|k| {
                        a.data[i * a.row_stride + k * a.col_stride] as f64
                            * b.data[k * b.row_stride + j * b.col_stride] as f64
                    })
                    .sum();
            }
        }
        out
    }

    proptest! {
        #[test]
        fn strided_products_match_the_naive_one(
            m in 1usize..20, k in 1usize..40, n in 1usize..20, transpose_b: bool, accumulate: bool,
            threads in 1usize..3,
        ) {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
            let av = MatRef::new(&a, m, k);
            let bv = if transpose_b { MatRef::new(&b, n, k).t() } else { MatRef::new(&b, k, n) };
            let want = naive(av, bv);
            let mut dst = vec![1.0f32; m * (n + 3)];
            matmul_into(&mut dst, n + 3, av, bv, 0.5, accumulate, Threads::Up(threads));
            for i in 0..m {
                for j in 0..n {
                    let expect = 0.5 * want[i * n + j] + if accumulate { 1.0 } else { 0.0 };
                    prop_assert!((dst[i * (n + 3) + j] as f64 - expect).abs() < 1e-4);
                }
                for j in n..n + 3 {
                    prop_assert_eq!(dst[i * (n + 3) + j], 1.0, "padding columns untouched");
                }
            }
        }
    }
}
