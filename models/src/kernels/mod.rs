//! slimbench's own CPU kernels for the hot paths of inference: vectorised element-wise ops (GELU,
//! softmax, layer norm), an f32 GEMM entry that writes into a caller's buffer with the bias fused,
//! and integer products for `int8` and the GGML block formats (AVX-512 VNNI, AVX-VNNI, AVX2 and
//! portable paths). Each picks the widest instruction set the CPU has at run time
//! (`SLIMBENCH_KERNELS` narrows it) and is tested against the straightforward computation.

pub mod bf16_tile;
pub mod blocks;
pub(crate) mod elementwise;
pub mod epilogue;
pub mod f32_dots;
pub mod f32_rows;
pub mod f32_tile;
pub mod int8;
pub(crate) mod int_tile;
pub mod isa;
pub mod linear;
pub(crate) mod panels;
pub mod peak;
pub(crate) mod portable;
pub(crate) mod qgemm;
pub mod sgemm;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

pub use isa::Isa;

/// The environment variable that narrows the kernels' instruction sets: `avx-vnni` (no AVX-512;
/// the integer kernels on 256-bit `vpdpbusd`, as on Intel's client CPUs since Alder Lake), `avx2`
/// (no AVX-512 and no VNNI, as on most other laptops and many cloud VMs) or `portable` (no
/// vector intrinsics at all); unset or `auto` uses everything the CPU has.
pub const KERNELS_ENV: &str = "SLIMBENCH_KERNELS";

/// Checks [`KERNELS_ENV`]: an error message naming the variable and its valid values when it holds
/// anything else, or asks for an instruction set this CPU lacks.
pub fn check_kernels_env() -> Result<(), String> {
    match std::env::var(KERNELS_ENV).as_deref() {
        Err(_) | Ok("") | Ok("auto") | Ok("portable") => Ok(()),
        Ok("avx2") if Isa::cpu_runs_avx2() => Ok(()),
        Ok("avx2") => Err(format!(
            "{KERNELS_ENV}=avx2 asks for the AVX2 kernels, but this CPU has no AVX2 and FMA; \
             unset it or set {KERNELS_ENV}=portable"
        )),
        Ok("avx-vnni") if Isa::cpu_runs_vnni256() => Ok(()),
        Ok("avx-vnni") => Err(format!(
            "{KERNELS_ENV}=avx-vnni asks for the 256-bit VNNI kernels, but this CPU has neither \
             AVX-VNNI nor AVX-512 VNNI; unset it or set {KERNELS_ENV}=avx2 or portable"
        )),
        Ok(other) => Err(format!(
            "{KERNELS_ENV}={other:?} is not a kernel choice; use `auto` (or leave it unset), \
             `avx-vnni`, `avx2` or `portable`"
        )),
    }
}

/// The number of threads the kernels split work over: `RAYON_NUM_THREADS` when set (as candle and
/// rayon read it), otherwise the machine's available parallelism. Read once: finding the
/// available parallelism reads the process's cgroup files, and a decode step asks before each of
/// its two hundred products (it cost SmolLM2's f32 decode a third of its speed).
pub fn thread_count() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(candle_core::utils::get_num_threads)
}

/// Runs `f` on a thread of rayon's pool and returns its result: a forward pass run there hands
/// each of its many small parallel products to the other threads by work stealing, where a caller
/// outside the pool is put to sleep and woken for each (MiniLM at batch 1 spent a sixth of its
/// time in the scheduler that way).
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    // Called from outside the pool, `join` runs both closures on a thread of it.
    rayon::join(f, || ()).0
}

/// Defines `pub fn $name(args)` that runs the `#[inline(always)]` function `$generic` compiled for
/// AVX-512, else AVX2+FMA, else baseline x86-64, picked at run time: one portable source, which
/// the compiler vectorises for each instruction set.
macro_rules! multiversion {
    ($(#[$meta:meta])* pub fn $name:ident($($arg:ident : $ty:ty),* $(,)?) => $generic:ident) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                unsafe fn wide($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn narrow($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                let isa = $crate::kernels::Isa::get();
                if isa.avx512() {
                    // SAFETY: the CPU has AVX-512 F/BW/DQ/VL (detected at run time).
                    return unsafe { wide($($arg),*) };
                }
                if isa.avx2_fma() {
                    // SAFETY: the CPU has AVX2 and FMA (detected at run time).
                    return unsafe { narrow($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    #[test]
    fn on_pool_runs_the_closure_on_a_pool_thread_and_returns_its_result() {
        let outside = std::thread::spawn(|| super::on_pool(rayon::current_thread_index))
            .join()
            .expect("the thread ran");
        assert!(outside.is_some(), "ran on a thread of the pool");
        // From inside the pool it runs in place.
        let inside = super::on_pool(|| super::on_pool(|| 7));
        assert_eq!(inside, 7);
    }
}
