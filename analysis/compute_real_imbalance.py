#!/usr/bin/python3
"""Expert-load imbalance of a run, computed from its gate logs.

Reads the per-step gate logs that moesim writes (``gate_logs/gate_logs_<k>.json``, format
``moesim-gate-log-v1``; files are read in numeric k order) and computes the two imbalance
measures of the published vLLM load-imbalance experiment, with the same arithmetic as moesim's
C++ (models/common/imbalance.cpp), so that the values agree with ``summary.json``'s
``imbalance`` section to within 1e-9.

Each step s holds, for every MoE layer l, the vector x[s, l, :] of tokens routed to each of the
E experts. For a vector x of E loads:

    mean(x) = (1/E) * sum_e x_e
    std(x)  = sqrt((1/E) * sum_e (x_e - mean(x))^2)           (population standard deviation)
    CV(x)   = std(x) / mean(x)                                 (CV = 0 when mean(x) = 0)

With S steps and L MoE layers:

    cv_per_step_mean        = (1/S) * sum_s (1/L) * sum_l CV(x[s, l, :])
                              (every step; the mean over steps of each step's layer-mean CV)
    A[l, :]                 = sum over steps s with num_tokens[s] <= max_tokens of x[s, l, :]
                              (the filter drops warm-up and profiling batches)
    cv_aggregated           = (1/L) * sum_l CV(A[l, :])
    cv_aggregated_all_steps = the same with A summed over every step
    max_over_min_aggregated = (1/L) * sum_l max(A[l, :]) / min(A[l, :])
                              (null when some layer has min = 0 while its sum is > 0;
                               a layer whose A is all zero counts as 1, as in moesim)
    steps                   = S
    steps_in_filter         = number of steps with num_tokens <= max_tokens
    total_tokens            = sum_s num_tokens[s]

When a layer vector sums to 0, its CV is 0, as in moesim. The sums run in the same order as the
C++ (over experts, then over steps per layer, then over layers), so the results are usually
bit-identical.

Modes:
    compute_real_imbalance.py DIR
        DIR holds gate_logs_*.json; prints the measures above as a JSON object.
    compute_real_imbalance.py DIR --all --output OUT.json [--method per-step|aggregated]
        every subfolder of DIR holds gate_logs_*.json; writes OUT.json mapping each subfolder
        name (sorted) to its cv_per_step_mean (or cv_aggregated with --method aggregated) and
        prints the mapping.

Exit status: 0 on success, 1 on bad input (the message names the file and what is wrong),
2 on a command-line error.
"""

import argparse
import json
import math
import os
import re
import sys

import numpy as np

import study_common as sc
from study_common import InputError

GATE_LOG_RE = re.compile(r"gate_logs_(\d+)\.json")
FORMAT = "moesim-gate-log-v1"


def gate_log_files(folder):
    """The gate_logs_<k>.json files of `folder`, in numeric k order."""
    found = sc.numbered_files(folder, GATE_LOG_RE, "gate log number", "no gate_logs_<k>.json files")
    return [os.path.join(folder, name) for name in found.values()]


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def load_gate_log(path):
    """Parses and checks one gate log; returns (num_layers, num_experts, num_tokens, counts)
    with num_tokens an int64 array [S] and counts a float64 array [S, L, E]."""
    doc = sc.read_json_object(path)
    if "format" in doc and doc["format"] != FORMAT:
        raise InputError(f"{path}: format is {doc['format']!r}, expected {FORMAT!r}")
    for key in ("moe_layers", "num_experts", "steps"):
        if key not in doc:
            raise InputError(f"{path}: missing field '{key}'")
    layers = doc["moe_layers"]
    if not isinstance(layers, list):
        raise InputError(f"{path}: 'moe_layers' must be a list of layer indices")
    experts = doc["num_experts"]
    if not _is_int(experts) or experts < 1:
        raise InputError(f"{path}: 'num_experts' must be a positive integer, got {experts!r}")
    steps = doc["steps"]
    if not isinstance(steps, list):
        raise InputError(f"{path}: 'steps' must be a list")
    L, E = len(layers), experts

    tokens = []
    rows = []
    for i, st in enumerate(steps):
        where = f"{path}: steps[{i}]"
        if not isinstance(st, dict):
            raise InputError(f"{where}: expected an object, got {type(st).__name__}")
        if "step" in st:
            where += f" (step {st['step']})"
        nt = st.get("num_tokens")
        if not _is_int(nt) or nt < 0:
            raise InputError(f"{where}: 'num_tokens' must be a non-negative integer, got {nt!r}")
        ec = st.get("expert_counts")
        if not isinstance(ec, list):
            raise InputError(f"{where}: 'expert_counts' missing or not a list")
        if len(ec) != L:
            raise InputError(f"{where}: expert_counts has {len(ec)} layer rows, expected {L} (one per entry of moe_layers)")
        for l, row in enumerate(ec):
            if not isinstance(row, list) or len(row) != E:
                got = f"{len(row)} counts" if isinstance(row, list) else type(row).__name__
                raise InputError(f"{where}: expert_counts[{l}] has {got}, expected {E} (num_experts)")
        tokens.append(nt)
        rows.append(ec)

    counts = np.array(rows) if rows else np.zeros((0, L, E))
    if counts.dtype.kind not in "iuf" or counts.shape != (len(rows), L, E):
        # Find the first offending step for the message.
        for i, ec in enumerate(rows):
            for l, row in enumerate(ec):
                for e, v in enumerate(row):
                    if isinstance(v, bool) or not isinstance(v, (int, float)):
                        raise InputError(f"{path}: steps[{i}]: expert_counts[{l}][{e}] is {v!r}, expected a number")
        raise InputError(f"{path}: expert_counts must hold only numbers")
    counts = counts.astype(np.float64)
    if counts.size and (not np.all(np.isfinite(counts)) or counts.min() < 0):
        bad = np.argwhere(~np.isfinite(counts) | (counts < 0))[0]
        raise InputError(f"{path}: steps[{bad[0]}]: expert_counts[{bad[1]}][{bad[2]}] is "
                         f"{counts[tuple(bad)]!r}; counts must be finite and >= 0")
    return L, E, np.array(tokens, dtype=np.int64), counts


def _seq_sum_last(a):
    """Sum over the last axis, adding the elements one after the other (as the C++ loops do)."""
    acc = np.zeros(a.shape[:-1])
    for e in range(a.shape[-1]):
        acc += a[..., e]
    return acc


def cv_last(a):
    """CV over the last axis: population std / mean, 0 where the mean is 0 (stats.cpp)."""
    n = a.shape[-1]
    m = _seq_sum_last(a) / n
    d = a - m[..., None]
    sd = np.sqrt(_seq_sum_last(d * d) / n)
    out = np.zeros_like(m)
    pos = m > 0
    out[pos] = sd[pos] / m[pos]
    return out


def _layer_mean(values):
    acc = 0.0
    for v in values:
        acc += float(v)
    return acc / len(values) if len(values) else 0.0


def imbalance(folder, max_tokens):
    """The imbalance measures of the gate logs in `folder` (see the module docstring)."""
    L = E = None
    first = None
    cv_sum = agg = agg_all = None
    steps = steps_in_filter = total_tokens = 0
    for path in gate_log_files(folder):
        fl, fe, tokens, counts = load_gate_log(path)
        if L is None:
            L, E, first = fl, fe, path
            cv_sum = np.zeros(L)
            agg = np.zeros((L, E))
            agg_all = np.zeros((L, E))
        elif (fl, fe) != (L, E):
            raise InputError(f"{path}: {fl} MoE layers x {fe} experts, but {first} has {L} x {E}")
        cv = cv_last(counts)  # [S, L]
        for s in range(cv.shape[0]):
            cv_sum += cv[s]
            agg_all += counts[s]
            if tokens[s] <= max_tokens:
                agg += counts[s]
        steps += int(cv.shape[0])
        steps_in_filter += int(np.count_nonzero(tokens <= max_tokens))
        total_tokens += int(tokens.sum())

    per_layer_step_mean = cv_sum / steps if steps > 0 else np.zeros(L)
    cv_agg = cv_last(agg)
    cv_agg_all = cv_last(agg_all)
    ratios = []
    for l in range(L):
        row = agg[l]
        if row.sum() <= 0:
            ratios.append(1.0)  # nothing routed: balanced, as moesim's load_stats
        elif row.min() > 0:
            ratios.append(float(row.max()) / float(row.min()))
        else:
            ratios.append(math.inf)
    mom = _layer_mean(ratios)
    return {
        "cv_per_step_mean": _layer_mean(per_layer_step_mean),
        "cv_aggregated": _layer_mean(cv_agg),
        "cv_aggregated_all_steps": _layer_mean(cv_agg_all),
        "max_over_min_aggregated": mom if math.isfinite(mom) else None,
        "steps": steps,
        "steps_in_filter": steps_in_filter,
        "total_tokens": total_tokens,
    }


def write_text(path, text):
    """Writes `text` and a newline to `path`; InputError naming `path` when it cannot be written."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError as e:
        raise InputError(f"{path}: cannot write: {e.strerror or e}") from None


def run_all(root, method, max_tokens, output):
    sc.require_dir(root)
    subdirs = sorted(n for n in os.listdir(root) if not n.startswith(".") and os.path.isdir(os.path.join(root, n)))
    if not subdirs:
        raise InputError(f"{root}: no subfolders (--all expects one subfolder of gate_logs_*.json per run)")
    key = "cv_aggregated" if method == "aggregated" else "cv_per_step_mean"
    result = {}
    for name in subdirs:
        sub = os.path.join(root, name)
        gate_log_files(sub)  # a subfolder without gate logs is an error naming it
        result[name] = imbalance(sub, max_tokens)[key]
    text = json.dumps(result, indent=2)
    write_text(output, text)
    print(text)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Expert-load imbalance (cv_per_step_mean, cv_aggregated, ...) from moesim gate logs, "
                    "computed as moesim's C++ does. See the module docstring for the formulas.",
        epilog=sc.EXIT_STATUS_EPILOG)
    parser.add_argument("dir", metavar="DIR",
                        help="folder of gate_logs_<k>.json files (with --all: folder of such folders)")
    parser.add_argument("--all", action="store_true",
                        help="DIR holds one subfolder of gate logs per run; write a mapping subfolder -> CV")
    parser.add_argument("--output", metavar="OUT.json",
                        help="where --all writes its mapping (required with --all); in the single-folder "
                             "mode, also write the printed object there")
    parser.add_argument("--method", choices=("per-step", "aggregated"), default=None,
                        help="with --all: map each subfolder to cv_per_step_mean (per-step, the default) "
                             "or cv_aggregated (aggregated)")
    parser.add_argument("--max-tokens", type=int, default=1000, metavar="N",
                        help="steps with more than N tokens are left out of cv_aggregated and "
                             "max_over_min_aggregated (default: 1000)")
    args = parser.parse_args(argv)
    if args.all and not args.output:
        parser.error("--all needs --output OUT.json")
    if args.method is not None and not args.all:
        parser.error("--method applies only with --all")

    try:
        if args.all:
            run_all(args.dir, args.method or "per-step", args.max_tokens, args.output)
        else:
            text = json.dumps(imbalance(args.dir, args.max_tokens), indent=2)
            if args.output:
                write_text(args.output, text)
            print(text)
    except InputError as e:
        print(f"compute_real_imbalance.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
