#!/usr/bin/python3
"""Power, temperature and clock timeline of a moesim run's GPUs, with an energy summary.

Reads ``gpus.csv``: one row per (time, GPU) state change, with the columns

    time_s,gpu,power_w,temp_die_c,temp_sink_c,clock_mhz,throttle_state,compute_util,mem_util

(``gpu`` an integer id; ``throttle_state`` a string such as ``none``, ``sw_slowdown``,
``hw_slowdown`` or ``shutdown``; every other column a finite number). Values are piecewise
constant: a row's values hold from its time_s until the next row of the same GPU (rows of one GPU
in file order; their time_s must not decrease, and rows of different GPUs may interleave). Two
rows of a GPU at the same time form an interval of zero length, so only the later one counts.

Per GPU g, with rows i = 1..n at times t_1 <= ... <= t_n and dt_i = t_{i+1} - t_i (dt_n = 0: the
summary covers [t_1, t_n], the last row's values hold from t_n on and add nothing):

    energy_j       = sum_i power_w_i * dt_i        (the exact integral of the step function; moesim
                                                     writes each row's power_w as its interval's
                                                     mean power, so this is the GPU's energy)
    covered_s      = t_n - t_1
    avg_power_w    = energy_j / covered_s          (NaN, printed "n/a", when covered_s is 0)
    peak_power_w   = max_i power_w_i               } over the rows in effect at some instant of
    max_temp_die_c = max_i temp_die_c_i            } [t_1, t_n]: those with dt_i > 0 and the last
                                                     row (a row superseded at its own time is not)
    throttle_s[s]  = sum of dt_i over the rows whose throttle_state is s, for each state s other
                     than "none" that occurs in the GPU's rows (0 when it occurs only in the last
                     row)

The figure has three panels sharing the x axis (simulated time, s): power per GPU and die
temperature per GPU as step lines (``where="post"``; the sink temperature dashed in the GPU's
colour), and clock per GPU with every throttled interval (consecutive rows of one GPU in the same
non-"none" state, merged) shaded in the colour of its state across the panel. The summary is
printed to stdout as a table, one row per GPU and one ``<state>_s`` column per throttle state
seen.

Usage: power_thermal_timeline.py GPUS_CSV --output PNG [--gpus 0,1,...] [--title TEXT]

Exit status: 0 on success, 1 on bad input (the message names the file and what is wrong: a
missing file, missing columns (all of them listed), a value that is not a number, time going
backwards within a GPU (the GPU and the line are named), a --gpus id absent from the file), 2 on
a command-line error.
"""

import argparse
import math
import os
import sys

import numpy as np
import pandas as pd

import study_common as sc
from study_common import InputError

PROG = "power_thermal_timeline.py"
COLUMNS = ["time_s", "gpu", "power_w", "temp_die_c", "temp_sink_c", "clock_mhz", "throttle_state",
           "compute_util", "mem_util"]
FLOAT_COLUMNS = ["time_s", "power_w", "temp_die_c", "temp_sink_c", "clock_mhz", "compute_util", "mem_util"]
NO_THROTTLE = "none"
KNOWN_STATES = ["sw_slowdown", "hw_slowdown", "shutdown"]          # print / legend order
STATE_COLORS = {"sw_slowdown": "gold", "hw_slowdown": "tab:red", "shutdown": "dimgray"}
OTHER_STATE_COLORS = ["tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]


# ---------------------------------------------------------------- reading and checking

def read_gpus_csv(path):
    """gpus.csv as a checked DataFrame in file order: ``gpu`` int64, ``throttle_state`` str,
    the other columns float64, plus ``line`` (the file line of each row, the header being line 1).

    Raises InputError naming the file when it is missing or unreadable, has no data rows, lacks
    columns (all missing ones listed), holds a value that is not a (finite) number or an integer
    GPU id, an empty throttle_state, or a GPU whose time_s decreases (GPU and line named).
    """
    raw = sc.read_csv_file(path, "gpus.csv",
                           f"the header {','.join(COLUMNS)} and one row per GPU state change",
                           dtype=str, keep_default_na=False, skipinitialspace=True)
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; "
                         f"available columns: {', '.join(raw.columns)}")
    if raw.empty:
        raise InputError(f"{path}: no data rows (only the header)")
    lines = np.arange(len(raw), dtype=np.int64) + 2

    df = pd.DataFrame(index=pd.RangeIndex(len(raw)))
    for col in COLUMNS:
        text = raw[col].str.strip()
        if col == "throttle_state":
            empty = (text == "").to_numpy()
            if empty.any():
                i = int(np.flatnonzero(empty)[0])
                raise InputError(f"{path}: line {lines[i]}: column 'throttle_state' is empty, "
                                 f"expected a state such as {NO_THROTTLE} or hw_slowdown")
            df[col] = text.to_numpy(dtype=object)
            continue
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if col == "gpu":
            bad |= np.isfinite(values) & ((values != np.floor(values)) | (values < 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = text.iloc[i]
            what = "a non-negative integer GPU id" if col == "gpu" else "a finite number"
            shown = "empty" if value == "" else f"{value!r}"
            raise InputError(f"{path}: line {lines[i]}: column {col!r} is {shown}, expected {what}")
        df[col] = values.astype(np.int64) if col == "gpu" else values
    df["line"] = lines
    check_time_order(df, path)
    return df


def check_time_order(df, path):
    """InputError naming the GPU and the line of the first row (in file order) whose time_s is
    before that of the previous row of the same GPU."""
    gpu = df["gpu"].to_numpy()
    t = df["time_s"].to_numpy(dtype=float)
    order = np.argsort(gpu, kind="stable")            # file order kept within each GPU
    g, ts = gpu[order], t[order]
    back = (g[1:] == g[:-1]) & (ts[1:] < ts[:-1])
    if back.any():
        k = np.flatnonzero(back)
        first = k[np.argmin(order[k + 1])]             # earliest offending row in the file
        cur, prev = order[first + 1], order[first]
        lines = df["line"].to_numpy() if "line" in df.columns else np.arange(len(df)) + 2
        raise InputError(f"{path}: line {lines[cur]} (data row {lines[cur] - 1}): time goes backwards for "
                         f"GPU {gpu[cur]}: time_s {t[cur]:g} is before {t[prev]:g} "
                         f"(line {lines[prev]}, the previous row of GPU {gpu[cur]})")


def select_gpus(df, path, gpus):
    """The rows of the GPUs in `gpus` (all rows when None); InputError naming the file and the
    GPUs present when one of them has no row."""
    if gpus is None:
        return df
    present = sorted(int(g) for g in df["gpu"].unique())
    absent = [g for g in gpus if g not in present]
    if absent:
        raise InputError(f"{path}: no rows for GPU(s) {', '.join(map(str, absent))}; "
                         f"GPUs in the file: {', '.join(map(str, present))}")
    return df[df["gpu"].isin(gpus)]


# ---------------------------------------------------------------- computing

def _gpu_rows(df):
    """{gpu: (time, index positions into df)} with each GPU's rows in file order, GPUs ascending."""
    gpu = df["gpu"].to_numpy()
    order = np.argsort(gpu, kind="stable")
    out = {}
    for g in np.unique(gpu):
        pos = order[gpu[order] == g]
        out[int(g)] = pos
    return out


def _ordered_states(states):
    """Throttle states (other than none) in the order of KNOWN_STATES, then the others sorted."""
    states = set(states) - {NO_THROTTLE}
    return [s for s in KNOWN_STATES if s in states] + sorted(states - set(KNOWN_STATES))


def summarise(df):
    """{gpu: summary} for the GPUs of `df` (a DataFrame with at least the columns time_s, gpu,
    power_w, temp_die_c, throttle_state; rows of each GPU in time order), GPUs ascending.

    Each summary is a dict with rows, t_start_s, t_end_s, covered_s, energy_j, avg_power_w (NaN
    when covered_s is 0), peak_power_w, max_temp_die_c and throttle_s ({state: seconds} for every
    state other than "none" found in the GPU's rows); see the module docstring for the formulas.
    """
    t_all = df["time_s"].to_numpy(dtype=float)
    p_all = df["power_w"].to_numpy(dtype=float)
    die_all = df["temp_die_c"].to_numpy(dtype=float)
    state_all = df["throttle_state"].astype(str).to_numpy(dtype=object)
    out = {}
    for g, pos in _gpu_rows(df).items():
        t, p, state = t_all[pos], p_all[pos], state_all[pos]
        dt = np.diff(t, append=t[-1])                   # the last row adds nothing
        held = dt > 0
        held[-1] = True                                 # rows in effect at some instant
        covered = float(t[-1] - t[0])
        energy = float(np.dot(p, dt))
        out[g] = {
            "rows": int(pos.size),
            "t_start_s": float(t[0]),
            "t_end_s": float(t[-1]),
            "covered_s": covered,
            "energy_j": energy,
            "avg_power_w": energy / covered if covered > 0 else math.nan,
            "peak_power_w": float(p[held].max()),
            "max_temp_die_c": float(die_all[pos][held].max()),
            "throttle_s": {s: float(dt[state == s].sum()) for s in _ordered_states(state)},
        }
    return out


def throttle_intervals(t, state):
    """[(start, end, state)] of the throttled intervals of one GPU (its rows' times and states in
    order): consecutive rows in the same non-"none" state merged, zero-length intervals dropped."""
    out = []
    for i in range(len(t) - 1):
        s = state[i]
        if s == NO_THROTTLE or t[i + 1] <= t[i]:
            continue
        if out and out[-1][2] == s and out[-1][1] == t[i]:
            out[-1] = (out[-1][0], float(t[i + 1]), s)
        else:
            out.append((float(t[i]), float(t[i + 1]), s))
    return out


def timeline_series(df):
    """The data to plot, as a dict:

    gpus       -- GPU ids, ascending
    series     -- {gpu: {time_s, power_w, temp_die_c, temp_sink_c, clock_mhz (float arrays, the
                  GPU's rows in order), throttle_state (object array)}}
    throttled  -- [(gpu, start_s, end_s, state)], the shaded intervals
    states     -- the throttle states shaded, in legend order
    summary    -- summarise(df)
    """
    series, throttled = {}, []
    for g, pos in _gpu_rows(df).items():
        s = {c: df[c].to_numpy(dtype=float)[pos]
             for c in ("time_s", "power_w", "temp_die_c", "temp_sink_c", "clock_mhz")}
        s["throttle_state"] = df["throttle_state"].astype(str).to_numpy(dtype=object)[pos]
        series[g] = s
        throttled += [(g, a, b, st) for a, b, st in throttle_intervals(s["time_s"], s["throttle_state"])]
    return {"gpus": sorted(series), "series": series, "throttled": throttled,
            "states": _ordered_states(st for _, _, _, st in throttled), "summary": summarise(df)}


# ---------------------------------------------------------------- output

def state_colors(states):
    """{state: colour}: fixed colours for the known states, a palette for the others."""
    colors, k = {}, 0
    for s in states:
        if s in STATE_COLORS:
            colors[s] = STATE_COLORS[s]
        else:
            colors[s] = OTHER_STATE_COLORS[k % len(OTHER_STATE_COLORS)]
            k += 1
    return colors


def format_summary(summary):
    """The summary as a text table: one row per GPU, one <state>_s column per throttle state."""
    states = _ordered_states(s for v in summary.values() for s in v["throttle_s"])
    head = (f"{'gpu':>5}{'covered_s':>12}{'energy_j':>14}{'avg_power_w':>13}{'peak_power_w':>14}"
            f"{'max_die_c':>11}" + "".join(f"{s + '_s':>{max(13, len(s) + 4)}}" for s in states))
    lines = [head]
    num = sc.format_number
    for g, v in summary.items():
        row = (f"{g:>5}{num(v['covered_s'], 12)}{num(v['energy_j'], 14)}{num(v['avg_power_w'], 13)}"
               f"{num(v['peak_power_w'], 14)}{num(v['max_temp_die_c'], 11)}")
        row += "".join(num(v["throttle_s"].get(s, 0.0), max(13, len(s) + 4)) for s in states)
        lines.append(row)
    if not states:
        lines.append("no throttling")
    return "\n".join(lines)


def draw(data, output, title, dpi=150):
    """Three stacked panels (power, temperatures, clock with throttled intervals shaded) in `output`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    gpus = data["gpus"]
    fig, (ax_p, ax_t, ax_c) = plt.subplots(3, 1, sharex=True, figsize=(11, 9), constrained_layout=True)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {g: cycle[i % len(cycle)] for i, g in enumerate(gpus)}
    for g in gpus:
        s = data["series"][g]
        ax_p.step(s["time_s"], s["power_w"], where="post", color=colors[g], linewidth=1.4, label=f"GPU {g}")
        ax_t.step(s["time_s"], s["temp_die_c"], where="post", color=colors[g], linewidth=1.4)
        ax_t.step(s["time_s"], s["temp_sink_c"], where="post", color=colors[g], linewidth=1.1,
                  linestyle="--", alpha=0.8)
        ax_c.step(s["time_s"], s["clock_mhz"], where="post", color=colors[g], linewidth=1.4)
    shade = state_colors(data["states"])
    for st in data["states"]:                          # one collection per state: full panel height
        boxes = [[(a, 0.0), (b, 0.0), (b, 1.0), (a, 1.0)] for _, a, b, s in data["throttled"] if s == st]
        ax_c.add_collection(PolyCollection(boxes, facecolors=shade[st], alpha=0.2, linewidths=0,
                                           zorder=0, transform=ax_c.get_xaxis_transform()))

    ax_p.set_ylabel("power (W)")
    ax_t.set_ylabel("temperature (°C)")
    ax_c.set_ylabel("clock (MHz)")
    ax_c.set_xlabel("simulated time (s)")
    for ax in (ax_p, ax_t, ax_c):
        ax.grid(True, alpha=0.3)
    outside = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 8}   # never over the data
    ax_p.legend(ncol=max(1, math.ceil(len(gpus) / 16)), **outside)
    ax_t.legend(handles=[Line2D([], [], color="black", linewidth=1.4, label="die"),
                         Line2D([], [], color="black", linewidth=1.1, linestyle="--", label="sink")],
                **outside)
    if data["states"]:
        ax_c.legend(handles=[Patch(color=shade[st], alpha=0.35, label=st) for st in data["states"]],
                    title="throttled", title_fontsize=8, **outside)
    fig.suptitle(title, fontsize=11)
    sc.save_figure(fig, output, dpi)


def plot_timeline(path, output, gpus=None, title=None):
    """Reads gpus.csv, keeps the GPUs in `gpus` (all when None), writes the PNG and returns the
    plotted data (see timeline_series; its summary is summarise() of the kept rows)."""
    sc.check_output_path(output)
    df = select_gpus(read_gpus_csv(path), path, gpus)
    data = timeline_series(df)
    if title is None:
        n = len(data["gpus"])
        title = f"Power, temperature and clock: {os.path.basename(path)} ({n} GPU{'s' if n != 1 else ''})"
    draw(data, output, title)
    return data


def gpu_list(text):
    """argparse type of --gpus: comma-separated non-negative integer ids, returned sorted, unique."""
    items = [x.strip() for x in text.split(",")]
    try:
        ids = [int(x) for x in items]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of GPU ids "
                                         f"(e.g. 0,1,3)") from None
    if any(i < 0 for i in ids):
        raise argparse.ArgumentTypeError(f"{text!r}: GPU ids cannot be negative")
    return sorted(set(ids))


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Plot power, die/sink temperature and clock per GPU from a moesim gpus.csv "
                    "(piecewise-constant state changes) and print per GPU the energy, average and "
                    "peak power, max die temperature and seconds in each throttle state. "
                    "See the module docstring for details.",
        epilog=sc.EXIT_STATUS_EPILOG)
    parser.add_argument("csv", metavar="GPUS_CSV", help="gpus.csv (one row per GPU state change)")
    parser.add_argument("--output", "-o", required=True, metavar="PNG", help="plot to write (PNG)")
    parser.add_argument("--gpus", type=gpu_list, default=None, metavar="0,1,...",
                        help="only these GPU ids (default: every GPU in the file)")
    parser.add_argument("--title", default=None, metavar="TEXT", help="figure title")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        data = plot_timeline(args.csv, args.output, args.gpus, args.title)
    except InputError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    print(format_summary(data["summary"]))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
