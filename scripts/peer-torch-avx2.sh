#!/usr/bin/env bash
# PyTorch on MiniLM restricted to AVX2, the AVX2-only peer of `SLIMBENCH_KERNELS=avx2` on a CPU
# with AVX-512 (ONNX Runtime has no switch for this: it always runs the widest path it detects).
# FBGEMM_ENABLE_INSTRUCTIONS=AVX2 sends the int8 dynamic linears to FBGEMM's AVX2 kernels (its JIT
# code takes about twice the samples under `perf` than with VNNI); ATEN_CPU_CAPABILITY,
# MKL_ENABLE_INSTRUCTIONS and ONEDNN_MAX_CPU_ISA do the same for the fp32 ops.
# Same inputs, runs and pinning as ../shared/peer/run.sh (run its setup.sh first); results are
# appended to $PEER_DIR/results.jsonl with the labels torch_fp32_avx2 and torch_int8dyn_avx2.
# usage: scripts/peer-torch-avx2.sh   (BATCHES="1 32" by default)
set -euo pipefail
peer=$(cd "$(dirname "$0")/../../shared/peer" && pwd)
export PEER_DIR=${PEER_DIR:-$HOME/.cache/slimbench-peer}
export ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 \
  FBGEMM_ENABLE_INSTRUCTIONS=AVX2
PY=$PEER_DIR/venv/bin/python
E=$PEER_DIR/emb/avx2
mkdir -p "$E"
for B in ${BATCHES:-1 32}; do
  if [ "$B" = 1 ]; then W=10; N=100; else W=3; N=50; fi
  for mode in fp32 int8dyn; do
    $PY "$peer/runbench.py" "torch_${mode}_avx2" -- \
      $PY "$peer/torch_bench.py" $mode $B $W $N 2 "$E/torch_${mode}_b$B.f32"
  done
done
