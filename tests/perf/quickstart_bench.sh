#!/usr/bin/env bash
# Wall time and peak memory of `moesim run` on the quickstart scenario, TP and EP.
# Prints the median of N runs (default 5) and the largest peak RSS. Usage:
#   tests/perf/quickstart_bench.sh [build/moesim] [runs]
set -euo pipefail
bin=${1:-build/moesim}
runs=${2:-5}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%-34s %10s %10s %10s %12s\n' "case" "median_s" "min_s" "max_s" "peak_rss_mb"
for mode in tp ep; do
  times=()
  peak=0
  for _ in $(seq "$runs"); do
    /usr/bin/time -f '%e %M' -o "$out/t" "$bin" run scenarios/quickstart.yaml --quiet --out "$out/run" \
      --set parallel.mode="$mode" >/dev/null
    read -r wall rss < "$out/t"
    times+=("$wall")
    (( rss > peak )) && peak=$rss
  done
  sorted=$(printf '%s\n' "${times[@]}" | sort -g)
  median=$(printf '%s\n' "$sorted" | sed -n "$(( (runs + 1) / 2 ))p")
  printf '%-34s %10s %10s %10s %12.1f\n' "quickstart mode=$mode" "$median" "$(head -1 <<<"$sorted")" \
    "$(tail -1 <<<"$sorted")" "$(echo "$peak / 1024" | bc -l)"
done
