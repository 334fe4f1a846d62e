#!/bin/bash
# The analysis scripts against a real run: analysis/compute_real_imbalance.py must agree with the
# simulator's summary.json to 1e-9 (single-folder and --all modes) and analysis/expert_heatmap.py
# must draw a PNG of the run's moe_expert_activations.csv.
#
# Usage: tests/analysis/test_analysis.sh MOESIM_BINARY SOURCE_DIR
# Prints "N passed, M failed" last; exits non-zero when a check (or the run itself) fails.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 MOESIM_BINARY SOURCE_DIR" >&2
  exit 2
fi
BIN=$(realpath -e -- "$1") || { echo "test_analysis: moesim binary not found: $1" >&2; exit 2; }
SRC=$(realpath -e -- "$2") || { echo "test_analysis: source dir not found: $2" >&2; exit 2; }
[[ -x $BIN ]] || { echo "test_analysis: not executable: $BIN" >&2; exit 2; }
PY=/usr/bin/python3
IMB=$SRC/analysis/compute_real_imbalance.py
HEAT=$SRC/analysis/expert_heatmap.py

TMP=$(mktemp -d)
trap 'rm -rf -- "$TMP"' EXIT

cd "$SRC"
"$BIN" run "$SRC/scenarios/quickstart.yaml" --quiet --out "$TMP/run" --set workload.requests=8

check_imbalance_matches_summary() {
  "$PY" "$IMB" "$TMP/run/gate_logs" > "$TMP/imbalance.json"
  "$PY" -c '
import json, sys
ours = json.load(open(sys.argv[1]))
ref = json.load(open(sys.argv[2]))["imbalance"]
bad = 0
for key, ref_key in (("cv_per_step_mean", "cv_per_step_mean"), ("cv_aggregated", "cv_aggregated"),
                     ("cv_aggregated_all_steps", "cv_aggregated_all_steps")):
    a, b = ours[key], ref[ref_key]
    if abs(a - b) > 1e-9:
        print(f"  {key}: compute_real_imbalance.py {a!r} != summary.json imbalance.{ref_key} {b!r}")
        bad += 1
sys.exit(1 if bad else 0)
' "$TMP/imbalance.json" "$TMP/run/summary.json"
}

check_all_mode() {
  mkdir -p "$TMP/multi"
  cp -r "$TMP/run/gate_logs" "$TMP/multi/gates_logs_01"
  cp -r "$TMP/run/gate_logs" "$TMP/multi/gates_logs_02"
  "$PY" "$IMB" "$TMP/multi" --all --output "$TMP/multi.json" > /dev/null
  "$PY" -c '
import json, sys
m = json.load(open(sys.argv[1]))
if sorted(m) != ["gates_logs_01", "gates_logs_02"]:
    sys.exit(f"  --all output has keys {sorted(m)}, expected gates_logs_01 and gates_logs_02")
a, b = m["gates_logs_01"], m["gates_logs_02"]
if not isinstance(a, float) or a != b:
    sys.exit(f"  --all values differ or are not numbers: gates_logs_01 {a!r}, gates_logs_02 {b!r}")
' "$TMP/multi.json"
}

check_heatmap() {
  "$PY" "$HEAT" "$TMP/run/moe_expert_tracking/moe_expert_activations.csv" --output "$TMP/heatmap.png"
  [[ -f $TMP/heatmap.png ]] || { echo "  heatmap.png was not written"; return 1; }
  local size
  size=$(stat -c %s "$TMP/heatmap.png")
  (( size > 10240 )) || { echo "  heatmap.png is only $size bytes (expected > 10 kB)"; return 1; }
}

passed=0
failed=0
run_check() {
  local name=$1 rc
  # A subshell outside any condition keeps `set -e` in force inside the check.
  set +e
  (set -e; "$name")
  rc=$?
  set -e
  if (( rc == 0 )); then
    echo "PASS $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name"
    failed=$((failed + 1))
  fi
}

run_check check_imbalance_matches_summary
run_check check_all_mode
run_check check_heatmap

echo "$passed passed, $failed failed"
(( failed == 0 ))
