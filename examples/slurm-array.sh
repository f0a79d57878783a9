#!/usr/bin/env bash
# Run one share of the plan per Slurm array task, then merge them:
#   sbatch examples/slurm-array.sh
#   slimbench merge results/shard-*/* --out results/merged
# SLIMBENCH_CONFIG names another config and SLIMBENCH_RESULTS another results folder (sbatch passes
# the submitting shell's environment on). Checked on a real single-node Slurm (Debian's slurm-wlm)
# by scripts/slurm-example-check.sh, in CI.
#SBATCH --job-name=slimbench
#SBATCH --array=1-4
#SBATCH --cpus-per-task=2
#SBATCH --time=01:00:00
set -euo pipefail
N=${SLURM_ARRAY_TASK_COUNT:-4}
I=${SLURM_ARRAY_TASK_ID}
CONFIG=${SLIMBENCH_CONFIG:-examples/bench.toml}
RESULTS=${SLIMBENCH_RESULTS:-results}
slimbench run --config "$CONFIG" --shard "${I}/${N}" --out "${RESULTS}/shard-${I}"
