#!/usr/bin/env bash
# Runs examples/slurm-array.sh as written on a real single-node Slurm (scripts/slurm-single-node.sh),
# merges its shares, runs the same plan on this machine alone, and checks that the merged folder
# holds the same cells: each cell once, every one ok, the same quality and size (deterministic),
# timings free to differ. Needs root (for the Slurm daemons) and target/release/slimbench.
#
#   cargo build --release && sudo bash scripts/slurm-example-check.sh [CONFIG] [OUT]
#
# CONFIG: the plan (default ci/slurm-plan.toml, six cells); OUT: where the runs go
# (default target/slurm-check, emptied first).
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-ci/slurm-plan.toml}
out=${2:-target/slurm-check}
if [ ! -x target/release/slimbench ]; then
  echo "slurm-example-check.sh: target/release/slimbench is missing; run cargo build --release first" >&2
  exit 2
fi
export PATH="$PWD/target/release:$PATH"
bash scripts/slurm-single-node.sh
rm -rf "$out"
mkdir -p "$out/logs"
echo "== sbatch --wait examples/slurm-array.sh (SLIMBENCH_CONFIG=$config, SLIMBENCH_RESULTS=$out)" >&2
SLIMBENCH_CONFIG="$config" SLIMBENCH_RESULTS="$out" \
  sbatch --wait --chdir="$PWD" --output="$out/logs/task-%a.out" examples/slurm-array.sh
for log in "$out"/logs/task-*.out; do
  echo "-- $log (last lines)" >&2
  tail -n 3 "$log" >&2
done
echo "== slimbench merge $out/shard-*/* --out $out/merged" >&2
slimbench merge "$out"/shard-*/* --out "$out/merged"
echo "== the same plan on this machine alone" >&2
slimbench run --config "$config" --out "$out/single"
python3 - "$out/merged" "$out"/single/* <<'PY'
import json, sys

def cells(folder):
    out = {}
    with open(f"{folder}/results.jsonl") as f:
        for line in f:
            r = json.loads(line)
            key = (r["model"], str(r["technique"]), r["device"], r["batch_size"],
                   r.get("seq_len"), r.get("gen_tokens"))
            if key in out:
                sys.exit(f"slurm check: {folder} holds cell {key} twice")
            q = r.get("quality") or {}
            out[key] = (r["status"], q.get("value_pct"), r.get("model_bytes"))
    return out

merged, single = cells(sys.argv[1]), cells(sys.argv[2])
if set(merged) != set(single):
    sys.exit(f"slurm check: cells differ: only merged {sorted(set(merged) - set(single))}, "
             f"only single {sorted(set(single) - set(merged))}")
for key in sorted(single):
    if merged[key] != single[key]:
        sys.exit(f"slurm check: cell {key}: merged {merged[key]} vs single {single[key]}")
    if merged[key][0] != "ok":
        sys.exit(f"slurm check: cell {key} is {merged[key][0]}")
print(f"slurm check: the merged Slurm shares hold the same {len(single)} cells as the one-machine run, "
      "each once, all ok, with equal quality and size")
PY
