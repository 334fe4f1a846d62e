#!/usr/bin/python3
"""moesim's benchmark suite (make bench): fixed scenarios, timed as whole processes.

For every case it prints, and writes to tests/perf/results.csv: process wall seconds (median of
the repeats), the simulation's own seconds (`run --timings`: engine setup and run), simulated
seconds, simulated/wall ratio, SimGrid activities per second, engine steps per second, simulated
output tokens per second, peak RSS, the target the case is held to and whether it was met.

  /usr/bin/python3 tests/perf/bench.py build/moesim            # the standard set (a few minutes)
  /usr/bin/python3 tests/perf/bench.py build/moesim --full     # + 1M requests, 10 simulated minutes of EP144
  /usr/bin/python3 tests/perf/bench.py build/moesim --only dense_llama2_7b_1000 --repeat 9

Run it on an idle machine: the figures are host seconds.
"""
import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PERF = ROOT / "tests" / "perf" / "scenarios"


@dataclass
class Case:
    name: str
    kind: str  # run | sweep
    scenario: str
    sets: list = field(default_factory=list)
    repeat: int = 1
    target: str = ""  # human-readable
    checks: dict = field(default_factory=dict)  # metric -> ("<" | ">=", value)
    full_only: bool = False
    jobs: int = 2
    gpus: int = 0  # scaling cases: GPUs of the deployment


def quickstart(mode, fidelity, checks, target, extra=()):
    return Case(f"quickstart_{mode}_{fidelity}", "run", "scenarios/quickstart.yaml",
                [f"parallel.mode={mode}", f"network.fidelity={fidelity}", *extra], repeat=5, target=target, checks=checks)


def cases():
    qs_analytic = {"simulate_s": ("<", 0.020), "wall_s": ("<", 0.100)}
    qs_flow = {"wall_s": ("<", 1.0)}
    ds_decode = str(PERF / "deepseek_v3_ep144_decode.yaml")
    out = [
        quickstart("tp", "analytic", qs_analytic, "simulate < 20 ms, process < 100 ms"),
        quickstart("ep", "analytic", qs_analytic, "simulate < 20 ms, process < 100 ms"),
        quickstart("tp", "flow", qs_flow, "process < 1 s"),
        quickstart("ep", "flow", qs_flow, "process < 1 s"),
        Case("study_baseline_vs_all2all", "sweep", "scenarios/baseline_vs_all2all.yaml", [], repeat=1,
             target="100 runs < 5 s at -j 2", checks={"wall_s": ("<", 5.0)}),
        # DeepSeek-V3 decode on EP144: 4608 sequences in flight. The short cases prefill 32-token
        # prompts in one step, then decode (32 steps analytic, 8 at flow fidelity), so decode steps
        # set the ratio; the full one runs ten simulated minutes with the scenario's 256-token prompts.
        Case("deepseek_v3_ep144_decode_analytic", "run", ds_decode,
             ["workload.requests=4608", "workload.prompt_tokens.value=32", "workload.output_tokens.value=32"],
             target="simulated/wall >= 100", checks={"sim_per_wall": (">=", 100.0)}),
        Case("deepseek_v3_ep144_decode_flow", "run", ds_decode,
             ["workload.requests=4608", "workload.prompt_tokens.value=32", "workload.output_tokens.value=8",
              "network.fidelity=flow"],
             target="simulated/wall >= 1", checks={"sim_per_wall": (">=", 1.0)}),
        # Ten simulated minutes at each fidelity (--full only: at this design's 0.2-0.3x real time they
        # take 40-70 minutes of wall time each).
        Case("deepseek_v3_ep144_decode_10min_analytic", "run", ds_decode,
             ["workload.requests=320000", "workload.output_tokens.value=256"], target="simulated/wall >= 100",
             checks={"sim_per_wall": (">=", 100.0)}, full_only=True),
        Case("deepseek_v3_ep144_decode_10min_flow", "run", ds_decode,
             ["workload.requests=320000", "workload.output_tokens.value=256", "network.fidelity=flow"],
             target="simulated/wall >= 1", checks={"sim_per_wall": (">=", 1.0)}, full_only=True),
        Case("deepseek_v3_ep32_prefill_analytic", "run", str(PERF / "deepseek_v3_ep32_prefill.yaml"),
             ["workload.requests=256"], target="(measured)"),
        Case("dense_llama2_7b_1000", "run", str(PERF / "dense_llama2_7b_a100.yaml"), [], repeat=5,
             target="process < 0.12 s, < 100 MB", checks={"wall_s": ("<", 0.12), "peak_rss_mb": ("<", 100.0)}),
        Case("dense_llama2_7b_10000", "run", str(PERF / "dense_llama2_7b_a100.yaml"), ["workload.requests=10000"],
             repeat=3, target="process < 0.6 s, < 100 MB", checks={"wall_s": ("<", 0.6), "peak_rss_mb": ("<", 100.0)}),
        Case("stream_100k_requests", "run", str(PERF / "stream_requests.yaml"), ["workload.requests=100000"],
             target="(memory growth)"),
        Case("stream_1m_requests", "run", str(PERF / "stream_requests.yaml"), ["workload.requests=1000000"],
             target="peak RSS < 1 GB", checks={"peak_rss_mb": ("<", 1024.0)}, full_only=True),
    ]
    # DeepSeek-V3 on one H200 node, EP8 with DP attention, a burst of 1,024 requests of 500 + 300
    # tokens at max_num_seqs 256 (count-level routing).
    out.append(Case("deepseek_v3_ep8_h200_burst", "run", str(PERF / "deepseek_v3_ep8_h200.yaml"), [],
                    target="simulated/wall >= 100", checks={"sim_per_wall": (">=", 100.0)}))
    # EP256 decode (32 nodes, two expert slots per GPU as DeepSeek's EP144 has).
    out.append(Case("deepseek_v3_ep256_decode_analytic", "run", ds_decode,
                    ["cluster.nodes=32", "parallel.ep=256", "routing.num_redundant_experts=256",
                     "workload.requests=8192", "workload.arrival.max_concurrency=8192",
                     "workload.prompt_tokens.value=32", "workload.output_tokens.value=16"],
                    target="simulated/wall >= 50", checks={"sim_per_wall": (">=", 50.0)}))
    # Four sizes of one decode deployment (H200, 32 sequences per GPU, no redundant experts): the
    # planning cost per step should grow at most linearly with GPUs x MoE layers.
    for gpus in (8, 32, 64, 256):
        seqs = 32 * gpus
        out.append(Case(f"scale_deepseek_v3_decode_{gpus}_gpus", "run", ds_decode,
                        ["cluster.gpu=h200", f"cluster.nodes={gpus // 8}", f"parallel.ep={gpus}", "routing.num_redundant_experts=0",
                         f"workload.requests={seqs}", f"workload.arrival.max_concurrency={seqs}",
                         "workload.prompt_tokens.value=32", "workload.output_tokens.value=16"],
                        target="linear in GPUs x MoE layers", gpus=gpus))
    # Three sizes of one scenario: cost should grow linearly with simulated tokens x MoE layers.
    for n in (100, 200, 400):
        out.append(Case(f"scale_quickstart_ep_{n}_requests", "run", "scenarios/quickstart.yaml",
                        ["parallel.mode=ep", "network.fidelity=analytic", f"workload.requests={n}"], repeat=3,
                        target="linear in tokens x MoE layers"))
    return out


def supports_timings(binary):
    """Older builds (to compare against) have no `run --timings`: then only process figures."""
    out = subprocess.run([binary, "run", "--help"], capture_output=True, text=True, cwd=ROOT)
    return "--timings" in out.stdout


TIMINGS = True


def run_once(binary, case, workdir):
    """One process; returns (wall seconds, peak RSS in MB, the timings dict or None)."""
    out_dir = Path(workdir) / case.name
    if case.kind == "run":
        cmd = [binary, "run", case.scenario, "--quiet", "--out", str(out_dir)] + (["--timings"] if TIMINGS else [])
        for s in case.sets:
            cmd += ["--set", s]
    else:
        cmd = [binary, "sweep", case.scenario, "-j", str(case.jobs), "--out", str(out_dir)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # wait4 gives this child's own resource usage (peak RSS); a sweep's children are counted in
    # RUSAGE_CHILDREN of the sweep process, so its figure is the sweep driver plus its largest child.
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stdout = proc.stdout.read()
    stderr = proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{case.name}: {' '.join(cmd)} failed:\n{stderr[-2000:]}")
    timings = None
    for line in stdout.splitlines():
        if line.startswith("timings: "):
            timings = json.loads(line[len("timings: "):])
    if case.kind == "sweep":
        timings = sweep_totals(out_dir)
    elif timings is None:
        # No --timings: what the outputs say (simulated seconds, steps, tokens).
        s = json.loads((out_dir / "summary.json").read_text())
        timings = {"simulated_s": s["run"]["simulated_end_s"], "steps": s["run"]["steps"],
                   "output_tokens": s["total_output_tokens"]}
    return wall, usage.ru_maxrss / 1024.0, timings


def sweep_totals(out_dir):
    """Simulated seconds and steps summed over a sweep's points (from their summary.json)."""
    total = {"simulated_s": 0.0, "steps": 0, "output_tokens": 0, "points": 0}
    for summary in Path(out_dir).glob("**/summary.json"):
        s = json.loads(summary.read_text())
        total["simulated_s"] += s["run"]["simulated_end_s"]
        total["steps"] += s["run"]["steps"]
        total["output_tokens"] += s["total_output_tokens"]
        total["points"] += 1
    return total


def measure(binary, case, repeat):
    walls, rss, timings = [], [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="moesim-bench-") as work:
            w, r, t = run_once(binary, case, work)
        walls.append(w)
        rss.append(r)
        timings.append(t)
    i = walls.index(statistics.median_low(walls))
    t = timings[i] or {}
    wall = walls[i]
    row = {
        "case": case.name,
        "wall_s": wall,
        "simulate_s": t.get("simulate_s", ""),
        "outputs_s": t.get("outputs_s", ""),
        "simulated_s": t.get("simulated_s", ""),
        "steps": t.get("steps", ""),
        "output_tokens": t.get("output_tokens", ""),
        "simgrid_activities": t.get("simgrid_activities", ""),
        "peak_rss_mb": max(rss),
        "repeats": repeat,
    }
    sim = t.get("simulated_s")
    row["sim_per_wall"] = sim / wall if sim else ""
    row["activities_per_s"] = t["simgrid_activities"] / wall if "simgrid_activities" in t else ""
    row["steps_per_s"] = t["steps"] / wall if t.get("steps") else ""
    row["tokens_per_s"] = t["output_tokens"] / wall if t.get("output_tokens") else ""
    met = []
    for metric, (op, limit) in case.checks.items():
        value = row[metric]
        ok = value != "" and (value < limit if op == "<" else value >= limit)
        met.append(ok)
    row["target"] = case.target
    row["met"] = "" if not met else ("yes" if all(met) else "no")
    return row


COLUMNS = ["case", "wall_s", "simulate_s", "outputs_s", "simulated_s", "sim_per_wall", "simgrid_activities",
           "activities_per_s", "steps", "steps_per_s", "output_tokens", "tokens_per_s", "peak_rss_mb", "repeats",
           "us_per_gpu_layer", "target", "met"]


def fmt(v, col):
    if v == "" or v is None:
        return "-"
    if isinstance(v, float):
        if col in ("wall_s", "simulate_s", "outputs_s"):
            return f"{v:.4f}"
        if col in ("sim_per_wall",):
            return f"{v:.3g}"
        if col == "peak_rss_mb":
            return f"{v:.1f}"
        return f"{v:.4g}"
    return str(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", help="the moesim executable (release build)")
    ap.add_argument("--full", action="store_true", help="also the long cases (1M requests, 10 simulated minutes of EP144)")
    ap.add_argument("--only", nargs="*", default=[], help="case names to run")
    ap.add_argument("--repeat", type=int, default=0, help="repeats per case (default: the case's own)")
    ap.add_argument("--csv", default=str(ROOT / "tests" / "perf" / "results.csv"), help="where to write the table")
    args = ap.parse_args()
    binary = str(Path(args.binary).resolve())
    global TIMINGS
    TIMINGS = supports_timings(binary)
    selected = [c for c in cases() if (not args.only or c.name in args.only) and (args.full or not c.full_only or c.name in args.only)]
    if not selected:
        sys.exit("bench.py: no case selected; names: " + ", ".join(c.name for c in cases()))
    rows = []
    header = f"{'case':<42}{'wall s':>9}{'sim s':>9}{'simulated s':>13}{'sim/wall':>10}{'act/s':>10}{'steps/s':>10}{'tok/s':>11}{'RSS MB':>9}  target"
    print(header)
    for case in selected:
        row = measure(binary, case, args.repeat or case.repeat)
        rows.append(row)
        print(f"{row['case']:<42}{fmt(row['wall_s'], 'wall_s'):>9}{fmt(row['simulate_s'], 'simulate_s'):>9}"
              f"{fmt(row['simulated_s'], 'simulated_s'):>13}{fmt(row['sim_per_wall'], 'sim_per_wall'):>10}"
              f"{fmt(row['activities_per_s'], 'x'):>10}{fmt(row['steps_per_s'], 'x'):>10}{fmt(row['tokens_per_s'], 'x'):>11}"
              f"{fmt(row['peak_rss_mb'], 'peak_rss_mb'):>9}  {row['target']}{' [' + row['met'] + ']' if row['met'] else ''}",
              flush=True)
    # Cost per simulated token x MoE layer for the three sizes (Mixtral: 32 MoE layers).
    by_gpus = [(r, c.gpus) for r, c in zip(rows, selected) if c.gpus]
    if by_gpus:
        print("\nplanning cost per step / (GPUs x 58 MoE layers), DeepSeek-V3 decode:")
        for r, gpus in by_gpus:
            per = (r["simulate_s"] or r["wall_s"]) / r["steps"] / (gpus * 58) * 1e6
            r["us_per_gpu_layer"] = per
            print(f"  {r['case']:<40} {per:8.2f} us per GPU-layer ({(r['simulate_s'] or r['wall_s']) / r['steps'] * 1e3:.2f} ms per step)")
    scale = [r for r in rows if r["case"].startswith("scale_quickstart")]
    if scale:
        print("\ncost per simulated output token x MoE layer (quickstart EP4, Mixtral 32 MoE layers):")
        for r in scale:
            per = (r["simulate_s"] or r["wall_s"]) / (r["output_tokens"] * 32) * 1e9
            print(f"  {r['case']:<40} {per:8.1f} ns")
    path = Path(args.csv)
    tmp = path.with_name("." + path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        f.write(f"# moesim benchmarks: {time.strftime('%Y-%m-%d')} on {platform.node()} ({os.cpu_count()} CPUs), {binary}\n")
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    os.replace(tmp, path)
    print(f"\nwrote {path}")
    missed = [r["case"] for r in rows if r["met"] == "no"]
    if missed:
        print("targets missed: " + ", ".join(missed))


if __name__ == "__main__":
    main()
