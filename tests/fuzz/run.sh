#!/usr/bin/env bash
# Runs the libFuzzer harnesses one after the other and prints executions per harness.
#   tests/fuzz/run.sh BUILD_DIR [SECONDS] [TARGET...]
# Each harness runs SECONDS (default 60), or FUZZ_RUNS inputs when that is set. New inputs go to
# BUILD_DIR/fuzz/corpus/<target> (the seeds of tests/fuzz/corpus and tests/fuzz/regressions are
# read, never written); a crash, hang, leak or sanitizer report leaves its input in
# BUILD_DIR/fuzz/artifacts/ and makes the script fail.
set -u
build=${1:?usage: tests/fuzz/run.sh BUILD_DIR [SECONDS] [TARGET...]}
seconds=${2:-60}
shift $(($# < 2 ? $# : 2))
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(scenario dataset gate_log profiler_csv)
src=$(cd "$(dirname "$0")" && pwd)
rss_mb=${FUZZ_RSS_MB:-2048}
timeout_s=${FUZZ_TIMEOUT_S:-10}

failed=0
summary=$(printf '%-14s %12s %10s %10s  %s' target executions seconds exec/s result)
for t in "${targets[@]}"; do
  bin=$build/fuzz/fuzz_$t
  [ -x "$bin" ] || { echo "run.sh: $bin not built" >&2; exit 2; }
  case $t in
    scenario) dict=scenario.dict; max_len=8192 ;;
    dataset) dict=json.dict; max_len=4096 ;;
    gate_log) dict=json.dict; max_len=8192 ;;
    profiler_csv) dict=profiler_csv.dict; max_len=8192 ;;
    *) echo "run.sh: unknown target $t" >&2; exit 2 ;;
  esac
  work=$build/fuzz/corpus/$t
  artifacts=$build/fuzz/artifacts
  log=$build/fuzz/$t.log
  mkdir -p "$work" "$artifacts"
  seeds=("$src/corpus/$t")
  [ -d "$src/regressions/$t" ] && seeds+=("$src/regressions/$t")
  if [ -n "${FUZZ_RUNS:-}" ]; then limit=(-runs="$FUZZ_RUNS"); else limit=(-max_total_time="$seconds"); fi
  echo "fuzz: $t (${limit[*]}, -rss_limit_mb=$rss_mb, -timeout=$timeout_s; log $log)"
  start=$(date +%s.%N)
  "$bin" "${limit[@]}" -rss_limit_mb="$rss_mb" -timeout="$timeout_s" -max_len="$max_len" -dict="$src/$dict" \
    -artifact_prefix="$artifacts/$t-" -print_final_stats=1 "$work" "${seeds[@]}" > "$log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(echo "$end - $start" | bc -l)
  if [ $rc -eq 0 ]; then result=ok; else result="FAILED (exit $rc)"; failed=1; tail -n 40 "$log" >&2; fi
  line=$(printf '%-14s %12s %10.0f %10.0f  %s' "$t" "${execs:-?}" "$secs" "$(echo "${execs:-0} / $secs" | bc -l)" "$result")
  echo "$line"
  summary+=$'\n'"$line"
done
echo
echo "$summary"
exit $failed
