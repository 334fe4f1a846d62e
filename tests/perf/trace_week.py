#!/usr/bin/python3
"""A one-week Azure-format trace streamed in bounded memory (make bench-trace).

Writes a week of requests in the Azure LLM inference trace's format (TIMESTAMP,ContextTokens,
GeneratedTokens; timestamps with seven decimals, as Azure publishes them) with a daily rate cycle
(a Poisson process whose rate follows a sine between --low and --high requests/s, peaking at
14:00), then times, as whole processes, with their peak RSS:

  trace-info     `moesim trace-info` over the whole week: every line parsed, one held at a time
  window         `moesim run` replaying 10 minutes of day 7 (the reader skips six days of lines)
  trace-info-1d  the same pass over the first day only (--duration-s 86400): memory must not grow
                 with the span read

Checks: every generated request counted by trace-info, the window's request count equal to the
generator's count for it, and trace-info's peak RSS within 1.25 x (+ 8 MB) of the one-day pass
(bounded: what is held does not grow with the file). Prints one row per case and writes them to
tests/perf/trace_week_results.csv.

  /usr/bin/python3 tests/perf/trace_week.py build/moesim               # ~6 M requests, ~230 MB
  /usr/bin/python3 tests/perf/trace_week.py build/moesim --high 40     # a busier week
"""
import argparse
import csv
import datetime as dt
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEEK_S = 7 * 86400
WINDOW_START_S = 6 * 86400 + 14 * 3600  # day 7, 14:00: the daily peak
WINDOW_S = 600


def rate_at(t, low, high):
    """Requests/s at t seconds after the start: a daily sine between low and high, peak at 14:00."""
    phase = 2 * math.pi * ((t % 86400) - 14 * 3600) / 86400
    return low + (high - low) * 0.5 * (1 + math.cos(phase))


def write_week(path, low, high, seed):
    """Thinning (Lewis & Shedler) of a Poisson process at the peak rate; returns (requests, window requests)."""
    rng = random.Random(seed)
    start = dt.datetime(2024, 5, 12, 0, 0, 0)
    t, n, in_window, first = 0.0, 0, 0, None
    with open(path, "w", buffering=1 << 20) as f:
        f.write("TIMESTAMP,ContextTokens,GeneratedTokens\n")
        while True:
            t += rng.expovariate(high)
            if t >= WEEK_S:
                break
            if rng.random() * high > rate_at(t, low, high):
                continue
            prompt = max(1, min(7000, int(rng.lognormvariate(7.0, 1.0))))
            output = max(1, min(2000, int(rng.lognormvariate(5.0, 1.0))))
            ts = start + dt.timedelta(microseconds=round(t * 1e6))
            f.write(f"{ts:%Y-%m-%d %H:%M:%S}.{ts.microsecond:06d}0,{prompt},{output}\n")
            n += 1
            first = t if first is None else first
            # The window is on the reader's clock: seconds after the file's first record.
            if WINDOW_START_S <= t - first < WINDOW_START_S + WINDOW_S:
                in_window += 1
    return n, in_window


def timed(cmd):
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--low", type=float, default=4.0, help="quietest rate, requests/s")
    ap.add_argument("--high", type=float, default=16.0, help="busiest rate, requests/s")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", help="write the week here and keep it (default: a temporary folder)")
    args = ap.parse_args()
    binary = str(Path(args.binary).resolve())

    with tempfile.TemporaryDirectory(prefix="moesim-week-") as work:
        week = Path(args.keep) if args.keep else Path(work) / "azure_week.csv"
        t0 = time.perf_counter()
        n, in_window = write_week(week, args.low, args.high, args.seed)
        size_mb = week.stat().st_size / 2**20
        print(f"wrote {week}: {n} requests, {size_mb:.0f} MB in {time.perf_counter() - t0:.1f} s")

        rows, failures = [], []
        wall, rss, out = timed([binary, "trace-info", str(week), "--format", "azure", "--json"])
        info = json.loads(out)
        if info["requests"] != n:
            failures.append(f"trace-info counted {info['requests']} requests, the file has {n}")
        rows.append({"case": "trace_week_info", "wall_s": wall, "peak_rss_mb": rss, "requests": info["requests"],
                     "lines_per_s": info["lines_read"] / wall, "mb_per_s": size_mb / wall})
        wall1, rss1, out1 = timed([binary, "trace-info", str(week), "--format", "azure", "--json", "--duration-s", "86400"])
        day = json.loads(out1)
        rows.append({"case": "trace_week_info_first_day", "wall_s": wall1, "peak_rss_mb": rss1, "requests": day["requests"],
                     "lines_per_s": day["lines_read"] / wall1, "mb_per_s": ""})
        if rss > 1.25 * rss1 + 8:
            failures.append(f"trace-info's peak RSS grows with the span read: {rss:.1f} MB for the week, {rss1:.1f} MB for a day")

        scenario = Path(work) / "week_window.yaml"
        scenario.write_text(
            "name: trace_week_window\n"
            "model: mixtral-8x7b\n"
            "cluster: {gpu: h100-sxm, nodes: 1, gpus_per_node: 8}\n"
            "parallel: {mode: tp}\n"
            "serving: {max_num_batched_tokens: 8192, max_num_seqs: 256, max_model_len: 16384}\n"
            "workload:\n"
            "  arrival: {process: trace}\n"
            f"  trace: {{format: azure, path: {week}, start_s: {WINDOW_START_S}, duration_s: {WINDOW_S}}}\n"
            "network: {fidelity: analytic}\n"
            "outputs: {gate_logs: false, expert_profiler: false}\n")
        out_dir = Path(work) / "run"
        wall2, rss2, _ = timed([binary, "run", str(scenario), "--quiet", "--out", str(out_dir)])
        s = json.loads((out_dir / "summary.json").read_text())
        got = s["trace"]["requests_in_window"]
        if got != in_window:
            failures.append(f"the window replayed {got} requests, the generator wrote {in_window} in it")
        rows.append({"case": "trace_week_window_day7", "wall_s": wall2, "peak_rss_mb": rss2, "requests": got,
                     "lines_per_s": s["trace"]["lines_read"] / wall2, "mb_per_s": ""})

    print(f"{'case':<28} {'wall_s':>8} {'peak_rss_mb':>12} {'requests':>10} {'lines/s':>12} {'MB/s':>8}")
    for r in rows:
        mbps = f"{r['mb_per_s']:.0f}" if r["mb_per_s"] != "" else ""
        print(f"{r['case']:<28} {r['wall_s']:>8.2f} {r['peak_rss_mb']:>12.1f} {r['requests']:>10} {r['lines_per_s']:>12.0f} {mbps:>8}")
    results = ROOT / "tests" / "perf" / "trace_week_results.csv"
    with open(results, "w", newline="") as f:
        f.write(f"# moesim trace_week.py: {dt.date.today()} on {platform.node()} ({os.cpu_count()} CPUs), {n} requests, "
                f"{size_mb:.0f} MB\n")
        w = csv.DictWriter(f, fieldnames=["case", "wall_s", "peak_rss_mb", "requests", "lines_per_s", "mb_per_s"])
        w.writeheader()
        for r in rows:
            w.writerow(r)
    for f in failures:
        print("FAIL:", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
