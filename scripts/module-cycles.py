#!/usr/bin/env python3
"""Lists import cycles between the modules of each crate (exit 1 if any).

A module is a file (`foo.rs` or `foo/mod.rs`). An edge A -> B is any path that names B from
A's code (`use crate::b::...`, `crate::b::f()`, `super::b`, a bare `b::` of a child module
declared with `mod b;`), comments and doc comments left out; a `mod b;` declaration alone is not
an edge. A folder's `mod.rs` is its facade: what it declares for its children (a trait they
implement, a type they share) and what it re-exports of them is one module's business, so edges
between a module and its own ancestors are left out; every other pair counts. Usage: scripts/module-cycles.py [CRATE_SRC ...] (default: harness/src models/src).
"""
import os
import re
import sys


def modules(src):
    """Module path (tuple) -> file, for every .rs file under src."""
    found = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            found[tuple(rel)] = path
    return found


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def resolve(path, mods):
    """The longest module prefix of path that is a module."""
    for n in range(len(path), 0, -1):
        if tuple(path[:n]) in mods:
            return tuple(path[:n])
    return None


def edges(mods):
    out = {m: set() for m in mods}
    for m, file in mods.items():
        with open(file, encoding="utf-8") as fh:
            code = strip_comments(fh.read())
        # Expand `use a::{b, c::d}` groups one level into paths.
        paths = []
        for use in re.findall(r"\buse\s+([^;]+);", code, flags=re.S):
            use = re.sub(r"\s+", "", use)
            g = re.match(r"^(.*?)::\{(.*)\}$", use)
            if g:
                prefix, inner = g.group(1), g.group(2)
                depth, part, parts = 0, "", []
                for ch in inner:
                    if ch == "{":
                        depth += 1
                    elif ch == "}":
                        depth -= 1
                    if ch == "," and depth == 0:
                        parts.append(part)
                        part = ""
                    else:
                        part += ch
                parts.append(part)
                paths.extend(f"{prefix}::{p}" for p in parts if p)
            else:
                paths.append(use)
        paths.extend(re.findall(r"\b((?:crate|super|self)(?:::\w+)+)", code))
        children = set(re.findall(r"\bmod\s+(\w+)\s*;", code))
        paths.extend(re.findall(rf"\b((?:{'|'.join(children)})(?:::\w+)+)", code) if children else [])
        for p in paths:
            parts = [x for x in re.split(r"::", p) if x]
            if not parts:
                continue
            if parts[0] == "crate":
                target = parts[1:]
            elif parts[0] in ("super", "self"):
                base = list(m)
                while parts and parts[0] in ("super", "self"):
                    if parts[0] == "super":
                        base = base[:-1]
                    parts = parts[1:]
                target = base + parts
            elif parts[0] in children:
                target = list(m) + parts
            else:
                continue
            t = resolve(target, mods)
            if t is None or t == m:
                continue
            if t[: len(m)] == m or m[: len(t)] == t:
                continue  # a module and its ancestor: the folder's facade
            out[m].add(t)
    return out


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, result, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                result.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return result


def main():
    crates = sys.argv[1:] or ["harness/src", "models/src"]
    bad = 0
    for src in crates:
        graph = edges(modules(src))
        for comp in cycles(graph):
            bad += 1
            names = ["::".join(c) or "(crate root)" for c in comp]
            detail = []
            for a in comp:
                for b in sorted(graph[a]):
                    if b in comp:
                        detail.append(f"{'::'.join(a) or 'root'} -> {'::'.join(b) or 'root'}")
            print(f"{src}: cycle among {', '.join(names)}\n    " + "\n    ".join(detail))
    if bad:
        sys.exit(1)
    print(f"no import cycles in {', '.join(crates)}")


if __name__ == "__main__":
    main()
