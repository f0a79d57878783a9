#!/usr/bin/env bash
# Runs the command lines of the README's "Quick start" block as a new user types them, in the
# documented order, and times each. `run` lines get the short-window flag `--quick` where they lack
# it (so CI stays short); a line that becomes the same as one already run is not run twice. Stops at
# the first command that fails, naming it. CI runs this, so a README command that breaks fails CI.
#
#   scripts/readme-quickstart.sh [--list]      # --list: print the commands, run nothing
#
# Writes target/readme-quickstart.tsv: one line per command, "<command>\t<seconds>\t<run folder>"
# (the run folder is empty for commands that make none).
set -euo pipefail
cd "$(dirname "$0")/.."

# The lines of the first ```sh block after "## Quick start", comments stripped.
mapfile -t commands < <(awk '
  /^## Quick start/ { in_section = 1; next }
  in_section && /^## / { exit }
  in_section && /^```sh/ { in_block = 1; next }
  in_block && /^```/ { exit }
  in_block {
    sub(/[ \t]+#.*$/, "")
    if ($0 ~ /[^ \t]/) print
  }' README.md)
if [ ${#commands[@]} -eq 0 ]; then
  echo "readme-quickstart: no command found in README.md's Quick start block" >&2
  exit 1
fi

with_quick() { # the command with --quick added to a `run` line that lacks it
  local line=$1
  if [[ $line == *" -- run"* && $line != *"--quick"* && $line != *"--resume"* ]]; then
    line="$line --quick"
  fi
  printf '%s' "$line"
}

if [ "${1:-}" = "--list" ]; then
  for c in "${commands[@]}"; do with_quick "$c"; echo; done
  exit 0
fi

mkdir -p target
summary=target/readme-quickstart.tsv
: > "$summary"
declare -A seen=()
for c in "${commands[@]}"; do
  line=$(with_quick "$c")
  if [ -n "${seen[$line]:-}" ]; then
    echo "== README: $c  (the same as \`$line\`, already run: skipped)"
    continue
  fi
  seen[$line]=1
  echo "== README: $line"
  log=$(mktemp)
  start=$(date +%s.%N)
  set +e
  bash -c "$line" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  set -e
  secs=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
  run_dir=$(sed -n 's/^report: \([^ ]*\) .*/\1/p' "$log" | tail -1)
  rm -f "$log"
  if [ "$status" -ne 0 ]; then
    echo "readme-quickstart: \`$line\` (README Quick start) failed with exit $status after $secs s" >&2
    exit 1
  fi
  printf '%s\t%s\t%s\n' "$line" "$secs" "$run_dir" >> "$summary"
  echo "== ok in $secs s"
done
echo "== README Quick start: every command ran"
column -t -s $'\t' "$summary" || cat "$summary"
