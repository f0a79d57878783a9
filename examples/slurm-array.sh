#!/usr/bin/env bash
# Run one share of the plan per Slurm array task, then merge them:
#   sbatch examples/slurm-array.sh
#   slimbench merge results/shard-*/* --out results/merged
#SBATCH --job-name=slimbench
#SBATCH --array=1-4
#SBATCH --cpus-per-task=2
#SBATCH --time=01:00:00
set -euo pipefail
N=${SLURM_ARRAY_TASK_COUNT:-4}
I=${SLURM_ARRAY_TASK_ID}
slimbench run --config examples/bench.toml --shard "${I}/${N}" --out "results/shard-${I}"
