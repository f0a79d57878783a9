#!/usr/bin/env bash
# Offline checks of the fleet examples that cannot run on a real engine here (no Kubernetes
# cluster, no GitHub runner): examples/k8s-indexed-job.yaml against Kubernetes 1.37's OpenAPI
# schema, strict (unknown fields are errors), with kubernetes-validate, the offline equivalent of
# `kubectl apply --dry-run=client`; its pod command parsed by sh -n for every index; and
# examples/github-*.yml against the GitHub workflow schema (check-jsonschema's vendored
# schemastore copy). Both tools come from PyPI into target/examples-venv. The Slurm example runs
# for real: scripts/slurm-example-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/examples-venv
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/check-jsonschema" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kubernetes-validate==1.37.0 check-jsonschema==0.39.0
fi
"$venv/bin/kubernetes-validate" --strict --kubernetes-version 1.37 examples/k8s-indexed-job.yaml
# The pod's shell command, as the container runs it, for each completion index.
"$venv/bin/python" - <<'PY'
import subprocess, yaml
job = yaml.safe_load(open("examples/k8s-indexed-job.yaml"))
container = job["spec"]["template"]["spec"]["containers"][0]
script = " ".join(container["args"])
for index in range(job["spec"]["completions"]):
    subprocess.run(["sh", "-n", "-c", script], check=True, env={"JOB_COMPLETION_INDEX": str(index)})
print(f"k8s: the pod command parses for each of {job['spec']['completions']} indexes: {script}")
PY
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows examples/github-matrix.yml examples/github-gate.yml
