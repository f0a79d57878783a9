//! Products of one to four f32 rows (a decode step's Linears) by an `out x in` weight in f32,
//! f16 or bf16: dot products that read each channel's inputs contiguously, so the weight streams
//! from memory once for all rows, in equal contiguous ranges of channels a thread (one row reads
//! channel after channel, one sequential stream a thread; more rows four channels at a time, each
//! weight vector loaded once for all rows). On a Zen 5 VM
//! this streams SmolLM2's f32 weights at about 40 GB/s, where the `gemm` crate's one-row product
//! over the transposed weight reached 25-28 (a stand-alone sweep of every decode-step shape, 2
//! threads). Half-precision weights are widened to f32 as each vector is loaded (the sums and
//! the activations stay f32), so they stream at half the bytes. AVX-512 (16 inputs a vector, four
//! rows of four channels; one row in AVX2's 256-bit dots, which streamed faster on Zen 4),
//! AVX2 + FMA (8 a vector, two rows of four channels; F16C for f16) and a portable path the
//! compiler vectorises, picked by [`Isa`].

use half::{bf16, f16};
use rayon::prelude::*;

use crate::kernels::epilogue::Epilogue;
use crate::kernels::isa::Isa;
use crate::kernels::portable::{dots_f32_portable, dots_widened_portable};
use crate::kernels::qgemm::{worth_threads, ONE_ROW_MAX_ROWS};
use crate::kernels::sgemm::MatRef;
use crate::kernels::thread_count;

/// An `out x in` weight the kernels stream, in its stored precision.
#[derive(Debug, Clone, Copy)]
pub enum RowWeights<'a> {
    /// f32.
    F32(&'a [f32]),
    /// IEEE half precision.
    F16(&'a [f16]),
    /// bfloat16.
    Bf16(&'a [bf16]),
}

impl<'a> RowWeights<'a> {
    fn len(&self) -> usize {
        match self {
            Self::F32(w) => w.len(),
            Self::F16(w) => w.len(),
            Self::Bf16(w) => w.len(),
        }
    }

    /// Channels `c0..c0 + width` of `k` inputs each.
    fn channels(&self, c0: usize, width: usize, k: usize) -> RowWeights<'a> {
        let range = c0 * k..(c0 + width) * k;
        match *self {
            Self::F32(w) => Self::F32(&w[range]),
            Self::F16(w) => Self::F16(&w[range]),
            Self::Bf16(w) => Self::Bf16(&w[range]),
        }
    }

    /// The precision's name in the kernel's name (`f32`, `f16`, `bf16`).
    fn precision(&self) -> &'static str {
        match self {
            Self::F32(_) => "f32",
            Self::F16(_) => "f16",
            Self::Bf16(_) => "bf16",
        }
    }
}

/// Output channels of one block of dot products.
const BLOCK: usize = 4;
/// Tasks a thread gets: a few, so one thread held up by the VM does not hold up the product.
const TASKS_PER_THREAD: usize = 4;

/// The name records give this kernel on `isa`'s path for f32 weights (`f32-rows-avx512`, ...).
/// The name is the path's: on `f32-rows-avx512` one row runs AVX2's 256-bit dot (see
/// `channel_dot`), two to four rows 512-bit vectors; so do the half-precision names.
pub fn name(isa: Isa) -> &'static str {
    match path(isa, RowWeights::F32(&[])) {
        RowPath::Avx512 => "f32-rows-avx512",
        RowPath::Avx2 => "f32-rows-avx2",
        RowPath::Portable => "f32-rows-portable",
    }
}

/// The name records give this kernel on `isa`'s path for half-precision weights (`bf16` picks
/// bf16 over f16): `bf16-rows-avx512`, `f16-rows-avx2`, ...
pub fn half_name(isa: Isa, bf16: bool) -> String {
    let w = if bf16 {
        RowWeights::Bf16(&[])
    } else {
        RowWeights::F16(&[])
    };
    let path = match path(isa, w) {
        RowPath::Avx512 => "avx512",
        RowPath::Avx2 => "avx2",
        RowPath::Portable => "portable",
    };
    format!("{}-rows-{path}", w.precision())
}

/// The instructions a product of `w`'s precision runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowPath {
    Avx512,
    Avx2,
    Portable,
}

fn path(isa: Isa, w: RowWeights<'_>) -> RowPath {
    if isa.avx512() {
        RowPath::Avx512
    } else if isa.avx2_fma() && (matches!(w, RowWeights::F32(_)) || has_f16c()) {
        RowPath::Avx2
    } else {
        RowPath::Portable
    }
}

/// Whether the CPU has F16C, which the AVX2 half-precision kernel is compiled with (every AVX2
/// CPU known has it; checked all the same).
fn has_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `dst = epilogue(x W^T)` for the contiguous `rows x k` activations `x` and the `n x k` weight
/// `w` (f32, f16 or bf16), into `dst` (`rows x n`), on `isa`'s path. Returns `false`, touching nothing, when the
/// product has more than [`ONE_ROW_MAX_ROWS`] rows (then it is compute-bound: tiles). Panics,
/// like indexing, when a slice is shorter than its shape.
pub(crate) fn matmul(
    isa: Isa,
    x: MatRef<'_>,
    w: RowWeights<'_>,
    n: usize,
    dst: &mut [f32],
    epilogue: Epilogue<'_>,
) -> bool {
    let (rows, k) = (x.rows, x.cols);
    if rows > ONE_ROW_MAX_ROWS {
        return false;
    }
    assert!(
        x.row_stride == k && x.col_stride == 1,
        "contiguous activations"
    );
    assert!(x.data.len() >= rows * k, "activations shape");
    assert!(w.len() >= n * k, "weight shape");
    assert_eq!(dst.len(), rows * n, "output shape");
    epilogue.check(rows, n);
    if rows == 0 || n == 0 {
        return true;
    }
    let threads = if worth_threads(rows, k, n) {
        thread_count()
    } else {
        1
    };
    let task_channels = n
        .div_ceil(threads * TASKS_PER_THREAD)
        .next_multiple_of(BLOCK);
    let dst_addr = dst.as_mut_ptr() as usize;
    let run_task = |task: usize| {
        let start = task * task_channels;
        let end = ((task + 1) * task_channels).min(n);
        let task_width = end - start;
        // The task's sums, `rows` rows of `task_width`, stored once at the end: between the
        // blocks the loop only computes, so the next block's loads follow at once.
        let mut task_sums = vec![0f32; rows * task_width];
        let mut c0 = start;
        while c0 < end {
            let width = BLOCK.min(end - c0);
            let mut sums = [[0f32; BLOCK]; ONE_ROW_MAX_ROWS];
            block(
                isa,
                &x.data[..rows * k],
                rows,
                w.channels(c0, width, k),
                width,
                k,
                &mut sums,
            );
            for (r, sums) in sums[..rows].iter().enumerate() {
                task_sums[r * task_width + c0 - start..][..width].copy_from_slice(&sums[..width]);
            }
            c0 += width;
        }
        // SAFETY: rows `0..rows`, channels `start..end` lie in `dst` (`rows x n`, asserted
        // above) and only this task writes them.
        unsafe {
            epilogue.store_strided(
                &task_sums,
                task_width,
                dst_addr as *mut f32,
                0,
                start,
                task_width,
                n,
            )
        };
    };
    let tasks = n.div_ceil(task_channels);
    if threads > 1 && tasks > 1 {
        (0..tasks).into_par_iter().for_each(run_task);
    } else {
        (0..tasks).for_each(run_task);
    }
    true
}

/// The dot products of `rows` rows of `x` with the `width <= 4` channels of `w`, into
/// `sums[row][channel]`.
fn block(
    isa: Isa,
    x: &[f32],
    rows: usize,
    w: RowWeights<'_>,
    width: usize,
    k: usize,
    sums: &mut [[f32; BLOCK]; ONE_ROW_MAX_ROWS],
) {
    if rows == 1 && streams_one_channel(isa, w) {
        // One row: channel after channel, each read in order, so the thread's reads of the
        // weight are one sequential stream (see `channel_dot`).
        for (c, sum) in sums[0][..width].iter_mut().enumerate() {
            *sum = channel_dot(isa, &x[..k], w.channels(c, 1, k), k);
        }
        return;
    }
    if width < BLOCK {
        // The last few channels of a product whose width is not a multiple of four.
        for c in 0..width {
            for (x, row_sums) in x.chunks_exact(k).zip(sums.iter_mut()) {
                let mut one = [[0f32; 1]; 1];
                channel_block(isa, x, w.channels(c, 1, k), k, &mut one);
                row_sums[c] = one[0][0];
            }
        }
        return;
    }
    match rows {
        1 => rows_block::<1>(isa, x, w, k, sums),
        2 => rows_block::<2>(isa, x, w, k, sums),
        3 => rows_block::<3>(isa, x, w, k, sums),
        _ => rows_block::<4>(isa, x, w, k, sums),
    }
}

/// [`block`] for `R` rows of four channels.
fn rows_block<const R: usize>(
    isa: Isa,
    x: &[f32],
    w: RowWeights<'_>,
    k: usize,
    sums: &mut [[f32; BLOCK]; ONE_ROW_MAX_ROWS],
) {
    if path(isa, w) == RowPath::Avx2 && R > 2 {
        // AVX2's 16 registers hold two rows of four channels' sums: rows in pairs.
        for (pair, x) in x.chunks(2 * k).enumerate() {
            let rows = x.len() / k;
            let out = &mut sums[2 * pair..];
            if rows == 2 {
                let mut two = [[0f32; BLOCK]; 2];
                channel_block(isa, x, w, k, &mut two);
                out[..2].copy_from_slice(&two);
            } else {
                let mut one = [[0f32; BLOCK]; 1];
                channel_block(isa, x, w, k, &mut one);
                out[0] = one[0];
            }
        }
        return;
    }
    let mut out = [[0f32; BLOCK]; R];
    channel_block(isa, x, w, k, &mut out);
    sums[..R].copy_from_slice(&out);
}

/// Whether one row's products on `isa` read channel after channel through [`channel_dot`]: on
/// every vector path (AVX2 and FMA, which every AVX-512 path has; F16C for half precision).
fn streams_one_channel(isa: Isa, w: RowWeights<'_>) -> bool {
    isa.avx2_fma() && (matches!(w, RowWeights::F32(_)) || has_f16c())
}

/// The dot product of one row `x` with one channel `w` (`k` inputs each), read in order with
/// four accumulators, 128 bytes of f32 weight (64 of half precision) a step in 256-bit vectors
/// (`avx2::dot_f32`, `avx2::dot_half`), on the AVX-512 paths too. One row's products read their
/// channels this way: four channels read side by side, four streams a thread, reached 27 GB/s
/// where one stream reached 32 (the read ceiling) on a Zen 4 VM on two threads, 14 against 24
/// on one; and 512-bit steps streamed 10-20% slower there (Zen 4 splits each 512-bit load in
/// two; SmolLM2 bf16 decode 84 against 101-105 tokens/s). Panics where
/// [`streams_one_channel`] is false, where [`block`] keeps [`channel_block`].
fn channel_dot(isa: Isa, x: &[f32], w: RowWeights<'_>, k: usize) -> f32 {
    assert!(x.len() >= k && w.len() >= k, "dot product operands");
    assert!(streams_one_channel(isa, w), "a vector path");
    #[cfg(target_arch = "x86_64")]
    {
        use crate::kernels::x86::avx2;
        let xp = x.as_ptr();
        // SAFETY (every arm): AVX2, FMA and, for half precision, F16C were detected (asserted
        // above: an `Isa` is made by detection, F16C checked by `has_f16c`); both operands hold
        // `k` values (asserted above); f16 and bf16 are 16-bit values, read as their bits.
        match w {
            // SAFETY: as above.
            RowWeights::F32(w) => unsafe { avx2::dot_f32(xp, w.as_ptr(), k) },
            // SAFETY: as above.
            RowWeights::F16(w) => unsafe { avx2::dot_half::<false>(xp, w.as_ptr().cast(), k) },
            // SAFETY: as above.
            RowWeights::Bf16(w) => unsafe { avx2::dot_half::<true>(xp, w.as_ptr().cast(), k) },
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no vector path off x86-64")
}

/// The `R x C` dot products of `x` (`R` rows of `k`) and `w` (`C` channels of `k`) on `isa`'s
/// path.
fn channel_block<const R: usize, const C: usize>(
    isa: Isa,
    x: &[f32],
    w: RowWeights<'_>,
    k: usize,
    out: &mut [[f32; C]; R],
) {
    assert!(x.len() >= R * k && w.len() >= C * k, "dot product operands");
    #[cfg(target_arch = "x86_64")]
    {
        use crate::kernels::x86::{avx2, avx512};
        let xp = x.as_ptr();
        // SAFETY (every arm): the path was detected (an `Isa` is made by detection, F16C
        // checked by `path`); the operands hold `R` and `C` rows of `k` (asserted above); f16 and
        // bf16 are 16-bit values, read as their bits.
        match (path(isa, w), w) {
            (RowPath::Avx512, RowWeights::F32(w)) => {
                // SAFETY: as above.
                return unsafe { avx512::dots_f32(xp, w.as_ptr(), k, out) };
            }
            (RowPath::Avx512, RowWeights::F16(w)) => {
                // SAFETY: as above.
                return unsafe { avx512::dots_half::<R, C, false>(xp, w.as_ptr().cast(), k, out) };
            }
            (RowPath::Avx512, RowWeights::Bf16(w)) => {
                // SAFETY: as above.
                return unsafe { avx512::dots_half::<R, C, true>(xp, w.as_ptr().cast(), k, out) };
            }
            (RowPath::Avx2, RowWeights::F32(w)) => {
                // SAFETY: as above.
                return unsafe { avx2::dots_f32(xp, w.as_ptr(), k, out) };
            }
            (RowPath::Avx2, RowWeights::F16(w)) => {
                // SAFETY: as above.
                return unsafe { avx2::dots_half::<R, C, false>(xp, w.as_ptr().cast(), k, out) };
            }
            (RowPath::Avx2, RowWeights::Bf16(w)) => {
                // SAFETY: as above.
                return unsafe { avx2::dots_half::<R, C, true>(xp, w.as_ptr().cast(), k, out) };
            }
            (RowPath::Portable, _) => {}
        }
    }
    let _ = isa;
    match w {
        RowWeights::F32(w) => dots_f32_portable(x, w, k, out),
        RowWeights::F16(w) => dots_widened_portable(x, w, k, f16::to_f32, out),
        RowWeights::Bf16(w) => dots_widened_portable(x, w, k, bf16::to_f32, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::kernels::panels::{assert_matches_straightforward, test_values as random};

    /// One weight in each precision the kernel streams, with the values it stands for.
    struct Weight {
        f32: Vec<f32>,
        f16: Vec<f16>,
        bf16: Vec<bf16>,
    }

    impl Weight {
        fn random(len: usize, seed: u64) -> Self {
            let f32 = random(len, seed);
            Self {
                f16: f32.iter().map(|v| f16::from_f32(*v)).collect(),
                bf16: f32.iter().map(|v| bf16::from_f32(*v)).collect(),
                f32,
            }
        }

        /// Each precision's weights and the value of each element.
        fn each(&self) -> [(RowWeights<'_>, Vec<f64>); 3] {
            [
                (
                    RowWeights::F32(&self.f32),
                    self.f32.iter().map(|v| *v as f64).collect(),
                ),
                (
                    RowWeights::F16(&self.f16),
                    self.f16.iter().map(|v| v.to_f64()).collect(),
                ),
                (
                    RowWeights::Bf16(&self.bf16),
                    self.bf16.iter().map(|v| v.to_f64()).collect(),
                ),
            ]
        }
    }

    /// The kernel on `isa` against the straightforward product of `rows x k` by `n x k`, in each
    /// precision of the weight.
    fn check(isa: Isa, (rows, k, n): (usize, usize, usize)) {
        let w = Weight::random(n * k, 3);
        for (weights, values) in w.each() {
            let product = |x: &[f32], dst: &mut [f32]| {
                matmul(
                    isa,
                    MatRef::new(x, rows, k),
                    weights,
                    n,
                    dst,
                    Epilogue::default(),
                )
            };
            let weight = |p: usize, c: usize| values[c * k + p];
            assert_matches_straightforward((rows, k, n), |v| v as f64, weight, product, 1e-4);
        }
    }

    proptest! {
        #[test]
        fn every_path_matches_the_straightforward_product(
            rows in 1usize..=4, k in 1usize..70, n in 1usize..40,
        ) {
            for isa in Isa::available() {
                check(isa, (rows, k, n));
            }
        }
    }

    #[test]
    fn threaded_products_of_decode_shapes_match_on_every_path() {
        // SmolLM2's down projection (1536 inputs, ragged on no path) and a width that leaves a
        // tail of channels (577), on the thread pool.
        for isa in Isa::available() {
            for rows in 1..=4 {
                check(isa, (rows, 1536, 577));
                check(isa, (rows, 573, 130));
            }
        }
    }

    #[test]
    fn the_epilogue_is_fused_on_every_path() {
        let (k, n) = (37, 45);
        let w = Weight::random(n * k, 5);
        for isa in Isa::available() {
            for (weights, _) in w.each() {
                for rows in 1..=4 {
                    crate::kernels::epilogue::assert_fused_epilogue(
                        rows,
                        k,
                        n,
                        random,
                        |x, rows, dst, e| {
                            assert!(matmul(isa, MatRef::new(x, rows, k), weights, n, dst, e));
                        },
                    );
                }
            }
        }
    }

    #[test]
    fn each_path_and_precision_has_its_name() {
        for isa in Isa::available() {
            let suffix = name(isa).strip_prefix("f32-rows-").expect("an f32 name");
            assert!(["avx512", "avx2", "portable"].contains(&suffix), "{suffix}");
            assert_eq!(half_name(isa, true), format!("bf16-rows-{suffix}"));
            assert_eq!(half_name(isa, false), format!("f16-rows-{suffix}"));
        }
    }

    #[test]
    fn products_of_more_rows_are_declined_untouched() {
        let x = [1.0f32; 10];
        let mut dst = [7.0f32; 10];
        assert!(!matmul(
            Isa::get(),
            MatRef::new(&x, 5, 2),
            RowWeights::F32(&x),
            2,
            &mut dst,
            Epilogue::default()
        ));
        assert_eq!(dst, [7.0; 10]);
    }
}
