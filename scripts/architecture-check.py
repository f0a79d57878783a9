#!/usr/bin/env python3
"""Checks the invariants of ARCHITECTURE.md that a script can check (exit 1 on any breach).

1. The harness reaches the models crate only through its doors (catalog, workload, technique,
   family's traits and the facts it records); it never names a model family's folder.
2. No harness code uses candle (comments aside): the models crate owns every tensor.
3. Nothing under analysis/, export/ or chart/ reads the clock, the environment or the hardware:
   a report is a pure function of a run's files.
4. Every file or folder ARCHITECTURE.md names in backticks exists in the tree, and every test its
   invariants cite as their check exists, so the map cannot drift from the code unnoticed.

Usage: scripts/architecture-check.py (from the repository root).
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The models modules the harness may name, and why: its doors and the facts it records.
HARNESS_MAY_NAME = {
    "catalog",  # model names, plan dimensions, build_workload, prepare_cell, fetch: the door
    "workload",  # Cell, WorkloadSpec, Built, Workload, VariantReport
    "technique",  # the technique grammar
    "family",  # MethodText and PlanDims: what a family declares, never which family
    "dimension",  # the plan dimensions beyond the batch size, each defined once as data
    "layer",  # LayerReport, recorded
    "quality",  # the quality figures, recorded
    "build_cost",  # what a build step cost, recorded
    "kernels",  # Isa (the path the records name) and the peak kernels, for calibration
    "device",  # device names
    "engine",  # the engines a cell may run on, their names recorded
    "cache",  # the cache folder
    "fetch",  # the models folder
    "error",  # ModelError, to tell not-applicable from failed
}
FAMILY_FOLDERS = {"digits", "text", "llm"}

# Names in backticks that are not paths of the tree: a run folder's parts, a shard's notation.
NOT_IN_THE_TREE = {"traces/", "i/N"}

PURE_FOLDERS = ["harness/src/analysis", "harness/src/export", "harness/src/chart"]
IMPURE = [
    r"Instant::now",
    r"SystemTime",
    r"Utc::now",
    r"now_utc\(",
    r"std::env::var",
    r"HostInfo::detect",
    r"open_meter",
    r'"/proc',
    r'"/sys',
]


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'"(?:\\.|[^"\\])*"', lambda m: m.group(0) if "/proc" in m.group(0) or "/sys" in m.group(0) else '""', text)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def rust_files(folder):
    for root, _, files in os.walk(os.path.join(ROOT, folder)):
        for f in files:
            if f.endswith(".rs"):
                yield os.path.join(root, f)


def check_doors(errors):
    for path in rust_files("harness/src"):
        code = strip_comments(open(path, encoding="utf-8").read())
        # Lower-case names are modules; capitalised ones the crate root's re-exports (its error).
        for module in re.findall(r"slimbench_models::([a-z_]\w*)", code):
            rel = os.path.relpath(path, ROOT)
            if module in FAMILY_FOLDERS:
                errors.append(f"{rel}: names the model family `{module}`; go through catalog")
            elif module not in HARNESS_MAY_NAME:
                errors.append(
                    f"{rel}: names slimbench_models::{module}, not one of the harness's doors "
                    f"({', '.join(sorted(HARNESS_MAY_NAME))}); add it there with its reason if it is one"
                )
        if re.search(r"\bcandle(_core|_nn)?\b", code):
            errors.append(f"{os.path.relpath(path, ROOT)}: uses candle; tensors belong to the models crate")


def check_pure(errors):
    for folder in PURE_FOLDERS:
        for path in rust_files(folder):
            code = strip_comments(open(path, encoding="utf-8").read())
            # Tests may build their fixtures as they like.
            code = code.split("#[cfg(test)]")[0]
            for pattern in IMPURE:
                if re.search(pattern, code):
                    errors.append(
                        f"{os.path.relpath(path, ROOT)}: {pattern.strip(chr(34))} in a module that must be a "
                        "pure function of a run's files"
                    )


def all_paths():
    found = set()
    for root, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in (".git", "target", "node_modules")]
        rel = os.path.relpath(root, ROOT)
        if rel != ".":
            found.add(rel.replace(os.sep, "/") + "/")
        for f in files:
            found.add(os.path.normpath(os.path.join(rel, f)).replace(os.sep, "/"))
    return found


def check_code_map(errors):
    text = open(os.path.join(ROOT, "ARCHITECTURE.md"), encoding="utf-8").read()
    paths = all_paths()
    # Source files and folders of the tree (a run folder's `traces/` or a model folder's
    # `config.json` are data the code writes or reads, not code, and are not checked).
    named = set(re.findall(r"`([\w./-]+\.(?:rs|py|sh|js)|[\w.-]+/[\w./-]*)`", text))
    for name in sorted(named):
        # The team's shared folder lies beside the repository, not in it.
        if name.startswith(("http", "../", "peer/", "~")) or name in NOT_IN_THE_TREE:
            continue
        if not any(p == name or p.endswith("/" + name) for p in paths):
            errors.append(f"ARCHITECTURE.md names `{name}`, which is not in the tree")


def check_cited_tests(errors):
    text = open(os.path.join(ROOT, "ARCHITECTURE.md"), encoding="utf-8").read()
    invariants = text.split("## Invariants", 1)[-1]
    cited = set(re.findall(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+){3,})`", invariants))
    defined = set()
    for folder in ("harness", "models", "benches"):
        for path in rust_files(folder):
            defined.update(re.findall(r"fn ([a-z0-9_]+)\s*[(<]", open(path, encoding="utf-8").read()))
    # Lint names (the workspace's [lints] tables) are checks too, not functions.
    lints = set(re.findall(r"^(\w+)\s*=", open(os.path.join(ROOT, "Cargo.toml"), encoding="utf-8").read(), re.M))
    for name in sorted(cited - defined - lints):
        errors.append(f"ARCHITECTURE.md cites the test `{name}` as a check; no such function exists")


def main():
    errors = []
    check_doors(errors)
    check_pure(errors)
    check_code_map(errors)
    check_cited_tests(errors)
    for e in errors:
        print(e)
    if errors:
        sys.exit(1)
    print("architecture-check: the harness's doors, pure report modules and the code map hold")


if __name__ == "__main__":
    main()
