#!/usr/bin/env bash
# Verifies the GPU path: the GPU tests, then a short `slimbench run` of the digits suite and (where
# fetched) MiniLM on the CPU and cuda:0, with the report written to $OUT (default
# reports/gpu-check). `--devices cpu` is a dry run that works on any machine.
#
#   scripts/gpu-check.sh [--devices cpu,cuda:0] [--bin-dir DIR] [--out DIR]
#   scripts/gpu-check.sh --build-only DIR     # here, without a GPU: build what a GPU machine runs
#
# GPU machines lent to this project cannot fetch crates: build here with `--build-only carry/gpu`
# (the cuda feature through scripts/cuda-toolchain.sh with LEAN=1: CUDA 13.0 from PyPI, stubs for
# the driver and cuBLAS; about 20 minutes on 2 cores; stripped and packed into a 17 MB
# gpu-bin.tar.xz), carry that folder, and there run
# `scripts/gpu-check.sh --bin-dir carry/gpu`. The binaries need the real driver (libcuda.so.1)
# and the CUDA 13 runtime libraries on that machine; the script looks for them.
set -euo pipefail
cd "$(dirname "$0")/.."
devices=cpu,cuda:0
bin_dir=""
out=${OUT:-reports/gpu-check}
build_only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --devices) devices=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --build-only) build_only=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# The path of the GPU test binary that `"$@" --workspace --test gpu --no-run` builds ("$@" is a
# cargo test command line; --workspace keeps the feature resolution of the other builds, so nothing
# is compiled twice).
gpu_test_binary() {
  "$@" --workspace --test gpu --no-run --message-format=json | python3 -c 'import json,sys
for l in sys.stdin:
    if not l.startswith("{"): continue  # the toolchain recipe may print other lines
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="gpu": print(m["executable"])'
}

# The slimbench binary and the GPU test binary, built with the cuda feature when a GPU is asked for.
build() { # build <dest dir> <with cuda: 1|0>
  local dest=$1 cuda=$2 profile tests
  mkdir -p "$dest"
  if [ "$cuda" = 1 ]; then
    profile=release
    LEAN=1 bash scripts/cuda-toolchain.sh . build --release -p slimbench --features cuda
    tests=$(LEAN=1 gpu_test_binary bash scripts/cuda-toolchain.sh . test --release --features cuda)
  else
    # The dry run: the release profile, which the README's commands and `cargo test --release`
    # have already built, so nothing is compiled twice.
    profile=release
    cargo build --release -p slimbench
    tests=$(gpu_test_binary cargo test --release)
  fi
  cp "target/$profile/slimbench" "$dest/slimbench"
  cp "$tests" "$dest/gpu-tests"
  # The release profile keeps line tables (debug = 1): strip them from the copies.
  strip "$dest/slimbench" "$dest/gpu-tests"
  echo "gpu-check: built $dest/slimbench and $dest/gpu-tests ($(du -sh "$dest" | cut -f1))"
}

wants_cuda=0
[[ $devices == *cuda* ]] && wants_cuda=1
if [ -n "$build_only" ]; then
  build "$build_only" 1
  # Stripped, the two cuda binaries are about 130 MB: over the 64 MiB a GPU machine can be sent.
  # Packed with xz they are about 17 MB; --bin-dir unpacks them.
  tar -C "$build_only" -cf - slimbench gpu-tests | xz -T0 -6 > "$build_only/gpu-bin.tar.xz"
  rm "$build_only/slimbench" "$build_only/gpu-tests"
  echo "gpu-check: carry $build_only ($(du -sh "$build_only/gpu-bin.tar.xz" | cut -f1)), then run scripts/gpu-check.sh --bin-dir $build_only there"
  exit 0
fi
if [ -n "$bin_dir" ] && [ -f "$bin_dir/gpu-bin.tar.xz" ] && [ ! -x "$bin_dir/slimbench" ]; then
  mkdir -p target/gpu-check-bin
  xz -dc "$bin_dir/gpu-bin.tar.xz" | tar -C target/gpu-check-bin -xf -
  bin_dir=target/gpu-check-bin
fi
if [ -z "$bin_dir" ]; then
  bin_dir=target/gpu-check-bin
  build "$bin_dir" "$wants_cuda"
fi

if [ "$wants_cuda" = 1 ]; then
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  # The CUDA 13 runtime libraries: a toolkit, or the nvidia wheels of a Python environment.
  for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 \
           $(find / -path /proc -prune -o -name 'libcublas.so.13' -printf '%h\n' 2>/dev/null | head -3); do
    [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  done
fi

echo "== GPU tests (each prints why it skips where no GPU is usable)"
"$bin_dir/gpu-tests" --nocapture --test-threads 1

echo "== slimbench run --devices $devices (digits)"
rm -rf "$out"
mkdir -p "$out"
status=0
"$bin_dir/slimbench" run --quick --devices "$devices" --models digits-mlp,digits-cnn \
  --techniques fp32,f16,bf16,q8_0,q4_0,prune-unstructured-90,prune-structured-50+q8_0 \
  --out "$out/digits" || status=$?
if [ -f "${SLIMBENCH_MODELS:-${SLIMBENCH_CACHE:-$HOME/.cache/slimbench}/models}/minilm/model.safetensors" ]; then
  echo "== slimbench run --devices $devices (MiniLM)"
  "$bin_dir/slimbench" run --quick --devices "$devices" --models minilm \
    --techniques fp32,f16,q8_0 --batch-sizes 1 --out "$out/minilm" || status=$?
else
  echo "== MiniLM skipped: not in the models cache (slimbench fetch minilm; GPU machines cannot fetch)"
fi
echo "gpu-check: reports under $out (report.html, results.csv in each run folder); exit $status"
exit $status
