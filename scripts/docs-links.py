#!/usr/bin/env python3
"""Checks that every relative link in README.md, docs/*.md, reports/README.md and ARCHITECTURE.md
points at a file or folder of the repository (and, for a link with #anchor into a Markdown file,
at one of its headings). Exits 1 listing the broken ones. CI runs it."""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
pages = [root / "README.md", root / "ARCHITECTURE.md", root / "reports" / "README.md"]
pages += sorted((root / "docs").glob("*.md"))
link = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def anchors(md: pathlib.Path) -> set:
    out = set()
    for line in md.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
            out.add(slug)
    return out


broken = []
checked = 0
for page in pages:
    if not page.exists():
        broken.append(f"{page.relative_to(root)}: the page itself is missing")
        continue
    text = page.read_text(encoding="utf-8")
    # Code blocks hold commands, not links.
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    for target in link.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve()
        checked += 1
        if not resolved.exists():
            broken.append(f"{page.relative_to(root)}: {target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{page.relative_to(root)}: {target} (no such heading)")
if broken:
    print("docs-links: broken links:\n  " + "\n  ".join(broken), file=sys.stderr)
    sys.exit(1)
print(f"docs-links: {checked} relative links in {len(pages)} pages resolve")
