//! slimbench's x86-64 kernels, one file an instruction set: `avx512` (512-bit VNNI tiles and the
//! element-wise kernels), `avx_vnni` (the tiles on 256-bit `vpdpbusd`), `avx2` (the tiles on
//! `vpmaddubsw`, and the activations' quantization). The one-row kernels of the block formats
//! keep their x86 code beside their format logic (`blocks::gemv`, `blocks::interleaved`), one
//! body for the three paths through the dot-product instruction each is given. Every function
//! here is `unsafe`: its caller checks the instruction set first (an [`Isa`](super::Isa) made
//! by detection).

pub(crate) mod avx2;
pub(crate) mod avx512;
pub(crate) mod avx_vnni;
