//! slimbench's own CPU kernels for the hot paths of inference: vectorised element-wise ops (GELU,
//! softmax, layer norm), an f32 GEMM entry that writes into a caller's buffer with the bias fused,
//! and integer products for `int8` and the GGML block formats (AVX-512 VNNI, AVX2 and portable
//! paths). Each picks the widest instruction set the CPU has at run time (`SLIMBENCH_KERNELS`
//! narrows it) and is tested against the straightforward computation.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
pub mod blocks;
pub(crate) mod elementwise;
pub mod epilogue;
pub mod int8;
pub mod peak;
pub(crate) mod qgemm;
pub mod sgemm;

/// The environment variable that narrows the kernels' instruction sets: `avx2` (no AVX-512, as on
/// most laptops and many cloud VMs) or `portable` (no vector intrinsics at all); unset or `auto`
/// uses everything the CPU has.
pub const KERNELS_ENV: &str = "SLIMBENCH_KERNELS";

/// Checks [`KERNELS_ENV`]: an error message naming the variable and its valid values when it holds
/// anything else, or asks for an instruction set this CPU lacks.
pub fn check_kernels_env() -> Result<(), String> {
    match std::env::var(KERNELS_ENV).as_deref() {
        Err(_) | Ok("") | Ok("auto") | Ok("portable") => Ok(()),
        Ok("avx2") if CpuFeatures::detect().avx2_fma => Ok(()),
        Ok("avx2") => Err(format!(
            "{KERNELS_ENV}=avx2 asks for the AVX2 kernels, but this CPU has no AVX2 and FMA; \
             unset it or set {KERNELS_ENV}=portable"
        )),
        Ok(other) => Err(format!(
            "{KERNELS_ENV}={other:?} is not a kernel choice; use `auto` (or leave it unset), \
             `avx2` or `portable`"
        )),
    }
}

/// The instruction sets the kernels can use on this CPU, detected once at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AVX-512 F/BW/DQ/VL: 16-wide f32 vectors.
    pub avx512: bool,
    /// AVX-512 VNNI (`vpdpbusd`): 64 int8 multiply-adds per instruction.
    pub avx512_vnni: bool,
    /// AVX2 with FMA (and F16C, which every AVX2 CPU has): 8-wide f32 vectors.
    pub avx2_fma: bool,
}

impl CpuFeatures {
    /// Detects the features of the CPU this process runs on.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let avx512 = std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512vl");
            Self {
                avx512,
                avx512_vnni: avx512 && std::arch::is_x86_feature_detected!("avx512vnni"),
                avx2_fma: std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self {
            avx512: false,
            avx512_vnni: false,
            avx2_fma: false,
        }
    }

    /// The name of the instructions the integer kernels run on with these features, as
    /// `slimbench calibrate` records its integer peak: `int8-vnni`, `int8-avx2`, or `None` on the
    /// portable path.
    pub fn int8_path(self) -> Option<&'static str> {
        if self.avx512_vnni {
            Some("int8-vnni")
        } else if self.avx2_fma {
            Some("int8-avx2")
        } else {
            None
        }
    }

    /// The features of this CPU (detected on first use), narrowed by [`KERNELS_ENV`]:
    /// `SLIMBENCH_KERNELS=avx2` hides AVX-512 (the path of CPUs without it),
    /// `SLIMBENCH_KERNELS=portable` every vector extension (for tests and comparisons). Any other
    /// value is refused by [`check_kernels_env`] before a run starts.
    pub fn get() -> Self {
        static FEATURES: std::sync::OnceLock<CpuFeatures> = std::sync::OnceLock::new();
        *FEATURES.get_or_init(|| {
            let detected = Self::detect();
            match std::env::var(KERNELS_ENV).as_deref() {
                Ok("portable") => Self {
                    avx512: false,
                    avx512_vnni: false,
                    avx2_fma: false,
                },
                Ok("avx2") => Self {
                    avx512: false,
                    avx512_vnni: false,
                    ..detected
                },
                _ => detected,
            }
        })
    }

    /// A short name of the widest path in use (`avx512-vnni`, `avx512`, `avx2`, `portable`).
    pub fn name(&self) -> &'static str {
        if self.avx512_vnni {
            "avx512-vnni"
        } else if self.avx512 {
            "avx512"
        } else if self.avx2_fma {
            "avx2"
        } else {
            "portable"
        }
    }
}

/// The number of threads the kernels split work over: `RAYON_NUM_THREADS` when set (as candle and
/// rayon read it), otherwise the machine's available parallelism.
pub fn thread_count() -> usize {
    candle_core::utils::get_num_threads()
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
                let features = $crate::kernels::CpuFeatures::get();
                if features.avx512 {
                    // SAFETY: the CPU has AVX-512 F/BW/DQ/VL (detected at run time).
                    return unsafe { wide($($arg),*) };
                }
                if features.avx2_fma {
                    // SAFETY: the CPU has AVX2 and FMA (detected at run time).
                    return unsafe { narrow($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}
pub(crate) use multiversion;
