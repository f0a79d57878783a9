//! Micro-benchmarks of the machine's physical limits: peak f32 FLOP/s (independent fused
//! multiply-adds in the widest vectors the CPU has, on every thread) and memory read bandwidth
//! (a sum over a buffer far larger than the caches). Compiled optimised in every profile, so a
//! debug build measures the same limits as a release one.

use std::time::Instant;

/// Fused multiply-adds per vector lane and pass of [`fma_loop`] (16 accumulators x `ITERS`).
const ITERS: usize = 1 << 16;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_avx512(seed: f32) -> f32 {
    use std::arch::x86_64::*;
    let mul = _mm512_set1_ps(0.999_999);
    let add = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(seed); 16];
    for _ in 0..ITERS {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, mul, add);
        }
    }
    let mut sum = _mm512_setzero_ps();
    for a in acc {
        sum = _mm512_add_ps(sum, a);
    }
    _mm512_reduce_add_ps(sum)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2(seed: f32) -> f32 {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe {
        use std::arch::x86_64::*;
        let mul = _mm256_set1_ps(0.999_999);
        let add = _mm256_set1_ps(1e-7);
        let mut acc = [_mm256_set1_ps(seed); 16];
        for _ in 0..ITERS {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, mul, add);
            }
        }
        let mut out = [0f32; 8];
        let mut sum = _mm256_setzero_ps();
        for a in acc {
            sum = _mm256_add_ps(sum, a);
        }
        _mm256_storeu_ps(out.as_mut_ptr(), sum);
        out.iter().sum()
    }
}

fn fma_portable(seed: f32) -> f32 {
    let mut acc = [seed; 16];
    for _ in 0..ITERS {
        for a in acc.iter_mut() {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    acc.iter().sum()
}

/// The FMA loop for this CPU: its name and FLOPs per call.
pub(crate) fn fma_loop() -> (&'static str, fn(f32) -> f32, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512 F (detected just above).
            return ("avx512", |s| unsafe { fma_avx512(s) }, ITERS * 16 * 16 * 2);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (detected just above).
            return ("avx2", |s| unsafe { fma_avx2(s) }, ITERS * 16 * 8 * 2);
        }
    }
    ("portable", fma_portable, ITERS * 16 * 2)
}

/// Runs `work(thread)` on `threads` threads at once and returns the wall time of the slowest.
fn timed_parallel<R: Send>(threads: usize, work: impl Fn(usize) -> R + Sync) -> (f64, Vec<R>) {
    let start = Instant::now();
    let results = std::thread::scope(|s| {
        let work = &work;
        let handles: Vec<_> = (0..threads).map(|t| s.spawn(move || work(t))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a calibration thread panicked"))
            .collect()
    });
    (start.elapsed().as_secs_f64(), results)
}

/// Peak f32 GFLOP/s over `threads` threads (best of `repeats` passes of `passes` loops each).
pub fn peak_gflops(threads: usize, passes: usize, repeats: usize) -> (&'static str, f64) {
    let (name, kernel, flops) = fma_loop();
    let best = (0..repeats.max(1))
        .map(|_| {
            let (secs, sums) = timed_parallel(threads, |t| {
                (0..passes)
                    .map(|p| kernel(1.0 + (t + p) as f32))
                    .sum::<f32>()
            });
            // The sums keep the loops from being optimised away.
            std::hint::black_box(sums);
            (threads * passes * flops) as f64 / secs / 1e9
        })
        .fold(0.0, f64::max);
    (name, best)
}

/// Independent `vpdpbusd` chains (each 64 int8 multiply-adds, 128 operations) of one pass.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn vnni_loop(seed: i32) -> i32 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_epi32(0x0101_0101);
    let b = _mm512_set1_epi32(seed & 0x0303_0303);
    let mut acc = [_mm512_set1_epi32(seed); 16];
    for _ in 0..ITERS {
        for x in acc.iter_mut() {
            *x = _mm512_dpbusd_epi32(*x, a, b);
        }
    }
    let mut sum = _mm512_setzero_si512();
    for x in acc {
        sum = _mm512_add_epi32(sum, x);
    }
    _mm512_reduce_add_epi32(sum)
}

/// Independent 256-bit `vpdpbusd` chains (each 32 int8 multiply-adds) of one pass, in the 16
/// registers of a CPU without AVX-512: `D`'s encoding of the instruction.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn vnni256_loop<D: crate::kernels::x86::avx_vnni::Dpbusd256>(seed: i32) -> i32 {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe {
        use std::arch::x86_64::*;
        let a = _mm256_set1_epi32(0x0101_0101);
        let b = _mm256_set1_epi32(seed & 0x0303_0303);
        let mut acc = [_mm256_set1_epi32(seed); 12];
        for _ in 0..ITERS {
            for x in acc.iter_mut() {
                *x = D::dpbusd(*x, a, b);
            }
        }
        lane_sum(&acc)
    }
}

/// The wrapping sum of every i32 lane of `acc` (what keeps a loop's chains from being optimised
/// away).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn lane_sum(acc: &[std::arch::x86_64::__m256i]) -> i32 {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe {
        use std::arch::x86_64::*;
        let mut sum = _mm256_setzero_si256();
        for x in acc {
            sum = _mm256_add_epi32(sum, *x);
        }
        let mut lanes = [0i32; 8];
        _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, sum);
        lanes.iter().fold(0, |s, v| s.wrapping_add(*v))
    }
}

/// [`vnni256_loop`] through AVX-VNNI's instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn avx_vnni_loop(seed: i32) -> i32 {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe { vnni256_loop::<crate::kernels::x86::avx_vnni::VexDpbusd>(seed) }
}

/// [`vnni256_loop`] through AVX-512 VNNI's instruction on 256-bit vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
unsafe fn vnni256_evex_loop(seed: i32) -> i32 {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe { vnni256_loop::<crate::kernels::x86::avx_vnni::EvexDpbusd>(seed) }
}

/// Independent `vpmaddubsw` + `vpmaddwd` + `vpaddd` chains (each 32 int8 multiply-adds) of one
/// pass: the AVX2 kernels' instructions, their operands changing every iteration so that none is
/// hoisted out of the loop.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2_int8_loop(seed: i32) -> i32 {
    // SAFETY: the body runs under this `unsafe fn`'s contract, which its caller upholds: the
    // CPU features it enables were detected, and its pointers and lengths are in bounds.
    unsafe {
        use std::arch::x86_64::*;
        let ones = _mm256_set1_epi16(1);
        let a: [__m256i; 8] = std::array::from_fn(|i| _mm256_set1_epi8(i as i8 + 1));
        let mut b = _mm256_set1_epi8((seed & 3) as i8);
        let step = _mm256_set1_epi8(1);
        let mut acc = [_mm256_set1_epi32(seed); 8];
        for _ in 0..ITERS {
            for (x, a) in acc.iter_mut().zip(&a) {
                *x = _mm256_add_epi32(*x, _mm256_madd_epi16(_mm256_maddubs_epi16(*a, b), ones));
            }
            b = _mm256_add_epi8(b, step);
        }
        lane_sum(&acc)
    }
}

/// Peak int8 GOP/s (a multiply-add counts two, as in [`peak_gflops`]) through the instructions of
/// the integer kernels' path on this CPU (as `SLIMBENCH_KERNELS` narrows it): `("int8-vnni",
/// GOP/s)` with AVX-512 VNNI, `("int8-avx-vnni", GOP/s)` on 256-bit `vpdpbusd` (AVX-VNNI, or
/// AVX-512 VNNI's instruction standing in for it), `("int8-avx2", GOP/s)` with AVX2; `None` on
/// the portable path.
pub fn peak_int8_gops(
    threads: usize,
    passes: usize,
    repeats: usize,
) -> Option<(&'static str, f64)> {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::kernels::isa::{Isa, Path};
        let path = Isa::get().path();
        let (name, ops, kernel): (&'static str, usize, fn(i32) -> i32) = if path == Path::Avx512Vnni
        {
            // SAFETY: the CPU has AVX-512 F/BW and VNNI (checked here).
            ("int8-vnni", ITERS * 16 * 64 * 2, |s| unsafe {
                vnni_loop(s)
            })
        } else if path == Path::AvxVnni {
            // SAFETY: the CPU has AVX2 and AVX-VNNI (checked here).
            ("int8-avx-vnni", ITERS * 12 * 32 * 2, |s| unsafe {
                avx_vnni_loop(s)
            })
        } else if path == Path::AvxVnniEvex {
            // SAFETY: the EVEX stand-in for AVX-VNNI runs only with AVX-512 VNNI and VL
            // (`Isa::get`).
            ("int8-avx-vnni", ITERS * 12 * 32 * 2, |s| unsafe {
                vnni256_evex_loop(s)
            })
        } else if Isa::get().avx2_fma() {
            // SAFETY: the CPU has AVX2 (checked here).
            ("int8-avx2", ITERS * 8 * 32 * 2, |s| unsafe {
                avx2_int8_loop(s)
            })
        } else {
            return None;
        };
        let best = (0..repeats.max(1))
            .map(|_| {
                let (secs, sums) = timed_parallel(threads, |t| {
                    (0..passes)
                        .map(|p| kernel((t + p) as i32))
                        .fold(0i32, i32::wrapping_add)
                });
                std::hint::black_box(sums);
                (threads * passes * ops) as f64 / secs / 1e9
            })
            .fold(0.0, f64::max);
        Some((name, best))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (threads, passes, repeats);
        None
    }
}

fn chunked_sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for c in xs.chunks_exact(16) {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum()
}

/// Read bandwidth in GB/s: `threads` threads each sum their share of a `bytes` buffer (best of
/// `repeats` passes).
pub fn read_bandwidth_gbs(threads: usize, bytes: usize, repeats: usize) -> f64 {
    let len = (bytes / 4).div_ceil(16 * threads) * 16 * threads;
    let data: Vec<f32> = (0..len).map(|i| (i % 7) as f32).collect();
    let share = len / threads;
    (0..repeats.max(1))
        .map(|_| {
            let (secs, sums) =
                timed_parallel(threads, |t| chunked_sum(&data[t * share..(t + 1) * share]));
            std::hint::black_box(sums);
            (len * 4) as f64 / secs / 1e9
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GFLOP/s of the 8-wide FMA loop on one thread (best of five passes of 20 loops).
    #[cfg(target_arch = "x86_64")]
    fn avx2_fma_gflops() -> f64 {
        (0..5)
            .map(|_| {
                let start = Instant::now();
                // SAFETY: only called for the AVX2 integer path, which needs AVX2 and FMA.
                let sums: f32 = (0..20).map(|p| unsafe { fma_avx2(p as f32) }).sum();
                std::hint::black_box(sums);
                (20 * ITERS * 16 * 8 * 2) as f64 / start.elapsed().as_secs_f64() / 1e9
            })
            .fold(0.0, f64::max)
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn avx2_fma_gflops() -> f64 {
        unreachable!("the AVX2 integer path exists on x86-64 only")
    }

    #[test]
    fn the_int8_peak_exceeds_the_f32_peak() {
        // vpdpbusd does 64 multiply-adds where an f32 FMA does 16 (32 where an AVX2 FMA does 8
        // on 256-bit vectors), vpmaddubsw 32 where an AVX2 FMA does 8: a slower int8 figure
        // would mean the loop measures something else.
        // Each is held to the f32 FMA loop of its own vector width: with SLIMBENCH_KERNELS=avx2 on
        // an AVX-512 CPU, `peak_gflops` still runs 16-wide FMAs.
        // Best of five passes on each side: single short passes on this kind of VM vary by 30%.
        if let Some((name, int8)) = peak_int8_gops(1, 20, 5) {
            let f32_peak = if name == "int8-avx2" || name == "int8-avx-vnni" {
                avx2_fma_gflops()
            } else {
                peak_gflops(1, 20, 5).1
            };
            assert!(int8 > 1.5 * f32_peak, "{name} {int8} vs f32 {f32_peak}");
        } else {
            eprintln!("skipped: the integer kernels run their portable path here");
        }
    }

    #[test]
    fn the_fma_loop_counts_flops_that_take_time() {
        // Twice the passes take longer: the loop is not optimised away, so FLOP/s are real.
        let (_, kernel, _) = fma_loop();
        // The best of five runs of each: a run that another test's threads or the VM preempted
        // says nothing about the loop (CI once saw 4 passes take 0.0079 s and 32 take 0.012 s).
        let time = |passes: usize| {
            (0..5)
                .map(|_| {
                    let s = Instant::now();
                    std::hint::black_box((0..passes).map(|p| kernel(p as f32)).sum::<f32>());
                    s.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
        };
        let (one, four) = (time(4), time(32));
        assert!(four > 2.0 * one, "32 passes {four}s vs 4 passes {one}s");
        let (_, gflops) = peak_gflops(1, 2, 1);
        assert!(gflops > 0.1 && gflops < 10_000.0, "{gflops} GFLOP/s");
        let gbs = read_bandwidth_gbs(1, 8 << 20, 1);
        assert!(gbs > 0.01 && gbs < 10_000.0, "{gbs} GB/s");
    }
}
