#!/usr/bin/env bash
# The report as a reader sees it: opens RUN_DIR/report.html in headless Chromium at 1400, 1024, 420
# and 360 px and fails if the page scrolls sideways, a table runs past the screen's edge (at 1024 px
# a wide table may scroll in its own box; at 1400 px it must fit), or chart text is displayed
# under 11 px; leaves a full-page screenshot of each width in OUT_DIR (default
# target/screenshots). Chromium comes from Debian (installed here when missing, as root),
# playwright-core from npm into target/report-layout (pinned in scripts/report-layout/).
#
#   bash scripts/report-layout-check.sh reports/<run-id> [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:?usage: scripts/report-layout-check.sh RUN_DIR [OUT_DIR]}
out=${2:-target/screenshots}
if [ ! -f "$run/report.html" ]; then
  echo "report-layout-check.sh: $run/report.html not found; give a run folder (reports/<run-id>)" >&2
  exit 2
fi
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "report-layout-check.sh: chromium is missing; install it with sudo apt-get install chromium" >&2
    exit 2
  fi
  echo "report-layout-check.sh: installing Debian's chromium" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
fi
tool=target/report-layout
mkdir -p "$tool" "$out"
cp scripts/report-layout/package.json scripts/report-layout/check.js "$tool/"
if [ ! -d "$tool/node_modules/playwright-core" ]; then
  (cd "$tool" && npm install --no-audit --no-fund --silent)
fi
# The check must be able to fail: a page with a wide table and 6 px chart text is refused.
bad=$(mktemp -d)
cat >"$bad/report.html" <<'HTML'
<!DOCTYPE html><html><head><meta name="viewport" content="width=device-width, initial-scale=1"></head><body>
<table><tr><td style="white-space:nowrap">a table row far wider than any phone's screen, which the check must see running past the edge</td></tr></table>
<svg viewBox="0 0 800 100" style="width:100%"><text x="0" y="50" font-size="12">tiny</text></svg>
</body></html>
HTML
if CHROMIUM=$(command -v chromium) node "$tool/check.js" "$bad/report.html" "$bad" >/dev/null 2>&1; then
  echo "report-layout-check.sh: the check passed a page that it must refuse; it checks nothing" >&2
  exit 1
fi
rm -rf "$bad"
CHROMIUM=$(command -v chromium) node "$tool/check.js" "$run/report.html" "$out"
