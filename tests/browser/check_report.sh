#!/usr/bin/env bash
# Renders a sweep report in headless Chromium, takes a screenshot and checks that every chart
# rendered (each <svg> in the rendered DOM holds a line, and the screenshot is not blank).
# Usage: tests/browser/check_report.sh BUILD_DIR/moesim   (run by `make test-browser`)
set -euo pipefail
bin=$(realpath "$1")
src=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$src"
"$bin" sweep scenarios/baseline_vs_all2all.yaml -j 2 --out "$tmp/sweep" --set workload.requests=4 > /dev/null 2>&1
"$bin" report "$tmp/sweep" > /dev/null
chromium --headless --no-sandbox --disable-gpu --dump-dom "file://$tmp/sweep/report.html" > "$tmp/dom.html" 2>/dev/null
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1500,4200 \
  --screenshot="$tmp/report.png" "file://$tmp/sweep/report.html" > /dev/null 2>&1
/usr/bin/python3 - "$tmp/dom.html" "$tmp/report.png" "$src/results/report-screenshot.png" <<'PY'
import re, shutil, sys, os
import matplotlib.image as mpimg
dom = open(sys.argv[1]).read()
charts = re.findall(r"<svg.*?</svg>", dom, re.S)
empty = [i for i, c in enumerate(charts) if "<polyline" not in c or "<circle" not in c]
img = mpimg.imread(sys.argv[2])
ink = float((img[..., :3].mean(axis=2) < 0.9).mean())
os.makedirs(os.path.dirname(sys.argv[3]), exist_ok=True)
shutil.copy(sys.argv[2], sys.argv[3])
print(f"charts rendered: {len(charts)}, without data: {len(empty)}, non-white pixels: {ink:.1%}")
print(f"screenshot: {sys.argv[3]}")
ok = len(charts) == 10 and not empty and ink > 0.02
print("1 passed, 0 failed" if ok else "0 passed, 1 failed")
sys.exit(0 if ok else 1)
PY
