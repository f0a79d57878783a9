//! slimbench's own CPU kernels for the hot paths of inference: vectorised element-wise ops (GELU,
//! softmax, layer norm), an f32 GEMM entry that writes into a caller's buffer with the bias fused,
//! and integer products for `int8` and the GGML block formats (AVX-512 VNNI, AVX-VNNI, AVX2 and
//! portable paths). Each picks the widest instruction set the CPU has at run time
//! (`SLIMBENCH_KERNELS` narrows it) and is tested against the straightforward computation.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
pub mod blocks;
pub(crate) mod elementwise;
pub mod epilogue;
pub mod int8;
pub mod peak;
pub(crate) mod qgemm;
pub mod sgemm;

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
        Ok("avx2") if CpuFeatures::detect().avx2_fma => Ok(()),
        Ok("avx2") => Err(format!(
            "{KERNELS_ENV}=avx2 asks for the AVX2 kernels, but this CPU has no AVX2 and FMA; \
             unset it or set {KERNELS_ENV}=portable"
        )),
        Ok("avx-vnni") if CpuFeatures::detect().runs_vnni256() => Ok(()),
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

/// The instruction sets the kernels can use on this CPU, detected once at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AVX-512 F/BW/DQ/VL: 16-wide f32 vectors.
    pub avx512: bool,
    /// AVX-512 VNNI (`vpdpbusd`): 64 int8 multiply-adds per instruction.
    pub avx512_vnni: bool,
    /// The integer kernels run on 256-bit `vpdpbusd` (32 int8 multiply-adds per instruction):
    /// AVX-VNNI's VEX form when `avx_vnni_vex`, else (only when `SLIMBENCH_KERNELS=avx-vnni`
    /// asks for it on a CPU with AVX-512 VNNI) the same instruction's EVEX form, which stands in
    /// for it.
    pub avx_vnni: bool,
    /// The CPU has AVX-VNNI (the VEX-encoded `vpdpbusd`).
    pub avx_vnni_vex: bool,
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
            let avx2_fma = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c");
            let avx_vnni = avx2_fma && std::arch::is_x86_feature_detected!("avxvnni");
            Self {
                avx512,
                avx512_vnni: avx512 && std::arch::is_x86_feature_detected!("avx512vnni"),
                avx_vnni,
                avx_vnni_vex: avx_vnni,
                avx2_fma,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self::NONE
    }

    /// No vector extension at all.
    const NONE: Self = Self {
        avx512: false,
        avx512_vnni: false,
        avx_vnni: false,
        avx_vnni_vex: false,
        avx2_fma: false,
    };

    /// Whether the 256-bit VNNI kernels can run: with AVX-VNNI, or with AVX-512 VNNI (its EVEX
    /// form of the instruction on 256-bit vectors).
    pub fn runs_vnni256(self) -> bool {
        self.avx2_fma && (self.avx_vnni_vex || self.avx512_vnni)
    }

    /// The name of the instructions the integer kernels run on with these features, as
    /// `slimbench calibrate` records its integer peak: `int8-vnni`, `int8-avx-vnni`, `int8-avx2`,
    /// or `None` on the portable path.
    pub fn int8_path(self) -> Option<&'static str> {
        if self.avx512_vnni {
            Some("int8-vnni")
        } else if self.avx_vnni {
            Some("int8-avx-vnni")
        } else if self.avx2_fma {
            Some("int8-avx2")
        } else {
            None
        }
    }

    /// The features of this CPU (detected on first use), narrowed by [`KERNELS_ENV`]:
    /// `SLIMBENCH_KERNELS=avx-vnni` hides AVX-512 and runs the integer kernels on 256-bit
    /// `vpdpbusd` (the path of CPUs with AVX-VNNI and no AVX-512), `SLIMBENCH_KERNELS=avx2` hides
    /// AVX-512 and both VNNIs (the path of CPUs with neither), `SLIMBENCH_KERNELS=portable` every
    /// vector extension (for tests and comparisons). Any other value is refused by
    /// [`check_kernels_env`] before a run starts.
    pub fn get() -> Self {
        static FEATURES: std::sync::OnceLock<CpuFeatures> = std::sync::OnceLock::new();
        *FEATURES.get_or_init(|| {
            let detected = Self::detect();
            match std::env::var(KERNELS_ENV).as_deref() {
                Ok("portable") => Self::NONE,
                Ok("avx2") => Self {
                    avx512: false,
                    avx512_vnni: false,
                    avx_vnni: false,
                    ..detected
                },
                Ok("avx-vnni") => Self {
                    avx512: false,
                    avx512_vnni: false,
                    avx_vnni: detected.runs_vnni256(),
                    ..detected
                },
                _ => detected,
            }
        })
    }

    /// A short name of the widest path in use (`avx512-vnni`, `avx512`, `avx-vnni`,
    /// `avx-vnni-evex` when AVX-512 VNNI's EVEX instruction stands in for AVX-VNNI's, `avx2`,
    /// `portable`).
    pub fn name(&self) -> &'static str {
        if self.avx512_vnni {
            "avx512-vnni"
        } else if self.avx512 {
            "avx512"
        } else if self.avx_vnni && self.avx_vnni_vex {
            "avx-vnni"
        } else if self.avx_vnni {
            "avx-vnni-evex"
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
