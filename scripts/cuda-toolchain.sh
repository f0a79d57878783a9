#!/usr/bin/env bash
# Copied from the team's ../shared/scripts/cuda-toolchain.sh (a tested recipe); .ci/run uses it to compile the
# cuda feature on machines without a GPU, scripts/gpu-check.sh to build the binary it carries.
# Change from the shared copy: `cargo metadata --all-features`, since cudarc is an optional dependency here.
# Build a crate that uses candle-core 0.11.1 with features=["cuda"] (cudarc 0.19.x,
# dynamic-linking + cuda-version-from-build-system; candle-kernels via cudaforge/nvcc)
# on a machine with NO GPU and NO system CUDA toolkit, using only PyPI wheels.
#
# Usage:  bash cuda-toolchain.sh /path/to/crate [cargo args...]     (default: build --release)
#   LEAN=1 bash cuda-toolchain.sh ...   -> skip the cuBLAS/cuRAND/NVRTC wheels (~570 MB) and link
#                                  against generated stubs for them too (the real libs must
#                                  then exist at run time, e.g. on the GPU machine).
# Source (not run) it with SOURCE_ONLY=1 to just get the environment variables.
set -euo pipefail

CRATE=$(cd "${1:-.}" && pwd); shift || true
CARGO_ARGS=("$@"); [ ${#CARGO_ARGS[@]} -eq 0 ] && CARGO_ARGS=(build --release)
WORK=${CUDA_WHEEL_WORK:-$HOME/.cache/cuda-wheels}           # where the wheels are unpacked
PY=${PYTHON:-python3}
mkdir -p "$WORK"
TK=$WORK/pyt130                                     # pip --target dir
export CUDA_HOME=$TK/nvidia/cu13                    # nvcc, include/, lib/, nvvm/ all live here

# 1. CUDA 13.0 toolchain from PyPI. 13.0 because the lent H100/H200 run driver 580.159 (CUDA 13.0):
#    PTX from a newer nvcc (13.4 emits PTX ISA 9.4) would not JIT there. nvidia-nvvm must be pinned:
#    nvidia-cuda-nvcc 13.0.88 depends on an UNPINNED nvidia-nvvm and pip otherwise picks 13.5.x.
#    (The -cu12 wheels cannot be used: nvidia-cuda-nvcc-cu12 ships only ptxas + libnvvm, no nvcc/cicc.)
if [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
  if [ "${LEAN:-0}" = 1 ]; then EXTRAS="nvcc,cudart,cccl,crt"; else EXTRAS="nvcc,cudart,cublas,curand,nvrtc,cccl,crt"; fi
  "$PY" -m pip install --no-compile --target "$TK" \
      "cuda-toolkit[$EXTRAS]==13.0.2" "nvidia-nvvm==13.0.88"
fi

# 2. Wheels ship only versioned sonames (libcudart.so.13 ...); the linker's -lcudart needs libcudart.so.
cd "$CUDA_HOME/lib"
for f in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13 libnvvm.so.4; do
  [ -e "$f" ] && ln -sf "$f" "${f%%.so*}.so"
done

# 3. cudarc's dynamic-linking emits -lcuda (driver API). No PyPI wheel and no Debian-main package
#    ships libcuda.so (the toolkit's lib64/stubs/libcuda.so is not in any wheel), so generate a link
#    stub (soname libcuda.so.1) exporting every cu* symbol cudarc binds. At run time the real driver's
#    libcuda.so.1 is used; lib/stubs must NOT be on LD_LIBRARY_PATH there.
cd "$CRATE"; cargo fetch >/dev/null
CUDARC=$(cargo metadata --format-version 1 --all-features 2>/dev/null | "$PY" -c 'import json,sys,os
m=json.load(sys.stdin); print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"]=="cudarc"))')
mkdir -p "$CUDA_HOME/lib/stubs"
mkstub() { # mkstub <cudarc sys module> <lib name> <soname>
  grep -oE '^pub unsafe fn [A-Za-z][A-Za-z0-9_]*' "$CUDARC/src/$1/sys/mod.rs" | awk '{print $4}' | sort -u |
    awk '{print "int " $1 "(void){return 100;}"}' > "$WORK/stub_$2.c"   # 100 = CUDA_ERROR_NO_DEVICE
  gcc -shared -fPIC -Wl,-soname,"$3" -o "$CUDA_HOME/lib/stubs/lib$2.so" "$WORK/stub_$2.c"
}
mkstub driver cuda libcuda.so.1
if [ "${LEAN:-0}" = 1 ]; then
  mkstub cublas   cublas   libcublas.so.13
  mkstub cublaslt cublasLt libcublasLt.so.13
  mkstub curand   curand   libcurand.so.10
  mkstub nvrtc    nvrtc    libnvrtc.so.13
fi

# 4. Environment read by the build scripts:
#    cudarc build.rs: runs `nvcc --version` from PATH (cuda-version-from-build-system -> cuda-13000),
#                     link search = $CUDA_HOME/{lib,lib/stubs,...} (also CUDA_PATH/CUDA_ROOT/CUDA_TOOLKIT_ROOT_DIR);
#                     CUDARC_CUDA_VERSION=13000 would override the nvcc probe.
#    cudaforge (candle-kernels build.rs): nvcc from $NVCC, else PATH, else $CUDA_HOME/bin; include/lib
#                     derived from nvcc's parent dir; CUDA_COMPUTE_CAP (else nvidia-smi, absent here);
#                     CUDAFORGE_THREADS (default 1 here: parallel nvcc jobs), NVCC_CCBIN (host compiler).
export PATH="$CUDA_HOME/bin:$PATH"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}     # H100/H200; cudaforge turns 90 into sm_90a
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-2}
[ "${SOURCE_ONLY:-0}" = 1 ] && return 0 2>/dev/null || true

cargo "${CARGO_ARGS[@]}"

# Run time (GPU machine): real driver libcuda.so.1 + libcudart.so.13, libcublas(Lt).so.13,
# libcurand.so.10 (libnvrtc.so.13 is dlopen-free but not NEEDED with --as-needed) on the loader path, e.g.
#   LD_LIBRARY_PATH=$CUDA_HOME/lib ./target/release/<bin>
# or the cu13 libs already on the lent machine (its torch cu130 venv / CUDA 13.0 toolkit).
