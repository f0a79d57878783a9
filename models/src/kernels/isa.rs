//! The one instruction-set type of the kernels: [`Isa`], the path they run on, which can only be
//! made by detecting the CPU, so that holding one proves its instructions run here.

/// The paths of the kernels, widest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    /// AVX-512 F/BW/DQ/VL and AVX-512 VNNI: 16-wide f32 vectors, the integer products on 512-bit
    /// `vpdpbusd` (64 int8 multiply-adds an instruction).
    Avx512Vnni,
    /// AVX-512 F/BW/DQ/VL without VNNI: 16-wide f32 vectors, the integer products on AVX2.
    Avx512,
    /// AVX2, FMA and AVX-VNNI: 8-wide f32 vectors, the integer products on AVX-VNNI's 256-bit
    /// (VEX) `vpdpbusd`, as on Intel's client CPUs since Alder Lake.
    AvxVnni,
    /// The AVX-VNNI path's code with AVX-512 VNNI's EVEX form of `vpdpbusd` standing in for the
    /// VEX one: what `SLIMBENCH_KERNELS=avx-vnni` runs on a CPU with AVX-512 VNNI and no AVX-VNNI,
    /// so tests and benchmarks can run that path there.
    AvxVnniEvex,
    /// AVX2 and FMA (and F16C): 8-wide f32 vectors, the integer products through `vpmaddubsw` +
    /// `vpmaddwd`.
    Avx2,
    /// No vector intrinsics: plain Rust.
    Portable,
}

impl Path {
    /// Every path, widest first.
    pub const ALL: [Path; 6] = [
        Path::Avx512Vnni,
        Path::Avx512,
        Path::AvxVnni,
        Path::AvxVnniEvex,
        Path::Avx2,
        Path::Portable,
    ];
}

/// The instruction-set path the kernels run on. Its only constructors read the CPU
/// ([`Isa::detect`], [`Isa::get`], [`Isa::available`]) or give the portable path
/// ([`Isa::portable`]), so a safe function that receives one may call the `#[target_feature]`
/// code of its path: the CPU has those instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Isa(Path);

/// What the CPU has, as `is_x86_feature_detected!` tells it.
#[derive(Debug, Clone, Copy, Default)]
struct Detected {
    avx512: bool,
    avx512_vnni: bool,
    avx_vnni: bool,
    avx2_fma: bool,
}

impl Detected {
    fn read() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let avx512 = std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512vl");
            let avx2_fma = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c");
            Self {
                avx512: avx512 && avx2_fma,
                avx512_vnni: avx512
                    && avx2_fma
                    && std::arch::is_x86_feature_detected!("avx512vnni"),
                avx_vnni: avx2_fma && std::arch::is_x86_feature_detected!("avxvnni"),
                avx2_fma,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self::default()
    }

    /// The widest path these features run.
    fn widest(self) -> Path {
        if self.avx512_vnni {
            Path::Avx512Vnni
        } else if self.avx512 {
            Path::Avx512
        } else if self.avx_vnni {
            Path::AvxVnni
        } else if self.avx2_fma {
            Path::Avx2
        } else {
            Path::Portable
        }
    }

    /// The 256-bit VNNI path these features run, if any: AVX-VNNI's own, else AVX-512 VNNI's
    /// EVEX form standing in.
    fn vnni256(self) -> Option<Path> {
        if self.avx_vnni {
            Some(Path::AvxVnni)
        } else if self.avx512_vnni {
            Some(Path::AvxVnniEvex)
        } else {
            None
        }
    }

    /// Whether the CPU runs `path`.
    fn runs(self, path: Path) -> bool {
        match path {
            Path::Avx512Vnni | Path::AvxVnniEvex => self.avx512_vnni,
            Path::Avx512 => self.avx512,
            Path::AvxVnni => self.avx_vnni,
            Path::Avx2 => self.avx2_fma,
            Path::Portable => true,
        }
    }
}

impl Isa {
    /// The widest path of the CPU this process runs on, whatever `SLIMBENCH_KERNELS` says.
    pub fn detect() -> Self {
        Isa(Detected::read().widest())
    }

    /// The path the kernels run on: this CPU's widest (detected on first use), narrowed by
    /// [`super::KERNELS_ENV`]: `avx-vnni` runs the 256-bit VNNI path (AVX-VNNI's, or AVX-512
    /// VNNI's EVEX form standing in), `avx2` the AVX2 path, `portable` no intrinsics at all. A
    /// narrower path than asked is taken where the CPU lacks it; [`super::check_kernels_env`]
    /// refuses that, and any other value, before a run starts.
    pub fn get() -> Self {
        static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *ISA.get_or_init(|| {
            let cpu = Detected::read();
            let path = match std::env::var(super::KERNELS_ENV).as_deref() {
                Ok("portable") => Path::Portable,
                Ok("avx2") if cpu.avx2_fma => Path::Avx2,
                Ok("avx2") => Path::Portable,
                Ok("avx-vnni") => cpu.vnni256().unwrap_or(if cpu.avx2_fma {
                    Path::Avx2
                } else {
                    Path::Portable
                }),
                _ => cpu.widest(),
            };
            Isa(path)
        })
    }

    /// Every path this CPU can run, widest first, whatever `SLIMBENCH_KERNELS` says: what tests
    /// compare against the portable code.
    pub fn available() -> Vec<Isa> {
        let cpu = Detected::read();
        Path::ALL
            .into_iter()
            .filter(|p| cpu.runs(*p))
            .map(Isa)
            .collect()
    }

    /// The portable path, which every CPU runs.
    pub fn portable() -> Self {
        Isa(Path::Portable)
    }

    /// The path.
    pub fn path(self) -> Path {
        self.0
    }

    /// True on the AVX-512 paths (16-wide f32 vectors).
    pub fn avx512(self) -> bool {
        matches!(self.0, Path::Avx512Vnni | Path::Avx512)
    }

    /// True on every vector path (AVX2 and FMA at least).
    pub fn avx2_fma(self) -> bool {
        self.0 != Path::Portable
    }

    /// True when the CPU has AVX2 and FMA, whatever path runs (for `SLIMBENCH_KERNELS=avx2`).
    pub fn cpu_runs_avx2() -> bool {
        Detected::read().avx2_fma
    }

    /// True when the CPU can run the 256-bit VNNI path (for `SLIMBENCH_KERNELS=avx-vnni`).
    pub fn cpu_runs_vnni256() -> bool {
        Detected::read().vnni256().is_some()
    }

    /// The short name of the path, as records and benchmarks name it (`avx512-vnni`, `avx512`,
    /// `avx-vnni`, `avx-vnni-evex`, `avx2`, `portable`).
    pub fn name(self) -> &'static str {
        match self.0 {
            Path::Avx512Vnni => "avx512-vnni",
            Path::Avx512 => "avx512",
            Path::AvxVnni => "avx-vnni",
            Path::AvxVnniEvex => "avx-vnni-evex",
            Path::Avx2 => "avx2",
            Path::Portable => "portable",
        }
    }

    /// The name of the instructions the integer kernels run on, as `slimbench calibrate` records
    /// its integer peak: `int8-vnni`, `int8-avx-vnni`, `int8-avx2`, or `None` on the portable
    /// path.
    pub fn int8_path(self) -> Option<&'static str> {
        match self.0 {
            Path::Avx512Vnni => Some("int8-vnni"),
            Path::AvxVnni | Path::AvxVnniEvex => Some("int8-avx-vnni"),
            Path::Avx512 | Path::Avx2 => Some("int8-avx2"),
            Path::Portable => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_available_path_runs_here_and_the_portable_one_always() {
        let available = Isa::available();
        assert_eq!(available.last(), Some(&Isa::portable()));
        assert!(available.contains(&Isa::detect()));
        let cpu = Detected::read();
        for isa in &available {
            assert!(cpu.runs(isa.path()), "{}", isa.name());
        }
        // The path in use is one the CPU runs, however SLIMBENCH_KERNELS narrows it.
        assert!(available.contains(&Isa::get()));
    }

    #[test]
    fn names_and_integer_paths_follow_the_path() {
        let names: Vec<&str> = Path::ALL.into_iter().map(|p| Isa(p).name()).collect();
        assert_eq!(
            names,
            [
                "avx512-vnni",
                "avx512",
                "avx-vnni",
                "avx-vnni-evex",
                "avx2",
                "portable"
            ]
        );
        assert_eq!(Isa(Path::AvxVnniEvex).int8_path(), Some("int8-avx-vnni"));
        assert_eq!(Isa(Path::Avx512).int8_path(), Some("int8-avx2"));
        assert!(Isa(Path::Avx512).avx512() && !Isa(Path::AvxVnni).avx512());
        assert!(!Isa::portable().avx2_fma());
    }
}
