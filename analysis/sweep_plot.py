#!/usr/bin/python3
"""Any summary metric of a moesim sweep against any swept key, one series per group value.

Reads ``sweep.csv`` (one row per sweep point; columns are the swept keys with dotted names such
as ``parallel.mode`` or ``workload.dataset``, numeric summary metrics such as ``mean_ttft_ms``,
and ``status``). Only rows whose ``status`` is ``ok`` are plotted (every row when the file has no
``status`` column); among those, rows with an empty x, an empty y or a y of nan/inf are left out
with a warning on stderr.

    y      = the --y column, which must be numeric
    x      = the --x column: numeric when every kept value parses as a finite number (the axis is
             numeric and each series is sorted by x), otherwise categorical (one tick per distinct
             value, in order of first appearance in the file; values that are paths in one
             common folder are labelled by file name, the folder going into the axis label)
    series = one per distinct value g of the --group column (label "<group>=<g>"; numeric group
             values in ascending order, others in order of first appearance), or a single series
             without --group

With ``--kind line`` (the default) each series' line joins, for every distinct x, the mean of its
y values there (the points themselves are drawn as markers); ``--kind scatter`` draws points only.

Usage: sweep_plot.py SWEEP_CSV --x COLUMN --y COLUMN [--group COLUMN] --output PNG
                     [--kind line|scatter]

Exit status: 0 on success, 1 on bad input (the message names the file and what is wrong, and a
missing column's message lists the available ones), 2 on a command-line error.
"""

import argparse
import os
import sys

import numpy as np
import pandas as pd

import study_common as sc
from study_common import InputError

PROG = "sweep_plot.py"
STATUS = "status"


def read_sweep(path):
    """sweep.csv as a DataFrame of stripped strings (empty cells are '')."""
    df = sc.read_csv_file(path, "sweep.csv", "a header row and one row per sweep point",
                          dtype=str, keep_default_na=False, skipinitialspace=True)
    if df.empty:
        raise InputError(f"{path}: no data rows (only the header {','.join(df.columns)})")
    return df.apply(lambda col: col.str.strip())


def require_columns(df, path, columns):
    """InputError naming the first missing column and listing the available ones."""
    for c in columns:
        if c is not None and c not in df.columns:
            raise InputError(f"{path}: no column {c!r}; available columns: {', '.join(df.columns)}")


def _as_numbers(values):
    """float array (NaN where a value is not a number)."""
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=float)


def _first_appearance(values):
    return list(dict.fromkeys(values))


def sweep_series(df, path, x, y, group=None, warn=None):
    """The data to plot, as a dict:

    x_numeric  -- True when x is numeric
    categories -- the x categories in axis order (None when x is numeric)
    rows       -- number of rows plotted
    series     -- list, in legend order, of dicts with
                  label, group (the group value, None without --group),
                  x (sorted floats, or category strings), x_pos (axis positions), y (floats),
                  line_x, line_y (distinct positions and the mean y there)
    """
    warn = warn or (lambda msg: None)
    require_columns(df, path, [x, y, group])
    lines = np.arange(len(df)) + 2                       # file line of each data row
    if STATUS in df.columns:
        ok = (df[STATUS] == "ok").to_numpy()
        if not ok.any():
            found = ", ".join(f"{v or '(empty)'} x{n}" for v, n in df[STATUS].value_counts().items())
            raise InputError(f"{path}: no row has status 'ok' (found: {found})")
    else:
        warn(f"{path}: no '{STATUS}' column; plotting every row")
        ok = np.ones(len(df), dtype=bool)
    rows = df[ok]
    lines = lines[ok]

    yv = _as_numbers(rows[y])
    bad = np.isnan(yv) & (rows[y] != "").to_numpy() & ~rows[y].str.lower().isin(["nan", "inf", "-inf"]).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}: line {lines[i]}: column {y!r} is {rows[y].iloc[i]!r}, expected a number")
    keep = np.isfinite(yv) & (rows[x] != "").to_numpy()
    if not keep.all():
        dropped = ", ".join(str(n) for n in lines[~keep])
        warn(f"{path}: left out {int((~keep).sum())} ok row(s) with an empty {x!r} or a missing/non-finite "
             f"{y!r} (line(s) {dropped})")
    if not keep.any():
        raise InputError(f"{path}: no ok row has both a value of {x!r} and a finite {y!r}")
    rows = rows[keep]
    yv = yv[keep]

    xs = rows[x].to_list()
    xnum = _as_numbers(xs)
    x_numeric = bool(np.isfinite(xnum).all())
    if x_numeric:
        categories = None
        xpos = xnum
        xval = xnum
    else:
        categories = _first_appearance(xs)
        where = {c: i for i, c in enumerate(categories)}
        xpos = np.array([where[v] for v in xs], dtype=float)
        xval = np.array(xs, dtype=object)

    if group is None:
        groups = [None]
        gvals = np.array([None] * len(rows), dtype=object)
    else:
        gvals = np.array([v if v != "" else "(empty)" for v in rows[group]], dtype=object)
        distinct = _first_appearance(gvals.tolist())
        gnum = _as_numbers(distinct)
        groups = [distinct[i] for i in np.argsort(gnum, kind="stable")] if np.isfinite(gnum).all() else distinct

    series = []
    for g in groups:
        m = np.ones(len(rows), dtype=bool) if g is None else (gvals == g)
        order = np.argsort(xpos[m], kind="stable")
        sx, sp, sy = xval[m][order], xpos[m][order], yv[m][order]
        ux = np.unique(sp)
        series.append({
            "label": y if g is None else f"{group}={g}",
            "group": g,
            "x": sx.tolist() if not x_numeric else sx,
            "x_pos": sp,
            "y": sy,
            "line_x": ux,
            "line_y": np.array([sy[sp == u].mean() for u in ux]),
        })
    return {"x_numeric": x_numeric, "categories": categories, "rows": int(len(rows)), "series": series}


def short_categories(categories):
    """(tick labels, common folder): when every category is a path in the same folder (such as
    workload.dataset values datasets/imbalance/007_0.1944.jsonl), the labels are the file names and
    the folder is returned for the axis label; otherwise the categories unchanged and ''."""
    folders = {os.path.dirname(c) for c in categories}
    if len(folders) == 1 and all("/" in c for c in categories):
        folder = folders.pop()
        names = [os.path.basename(c) for c in categories]
        if all(names) and len(set(names)) == len(names):
            return names, folder
    return list(categories), ""


def draw(data, path, x, y, group, output, kind="line", dpi=150):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cat = len(data["categories"] or [])
    width = 9 if n_cat <= 12 else min(18, 9 + 0.35 * (n_cat - 12))
    fig, ax = plt.subplots(figsize=(width, 6), constrained_layout=True)
    for s in data["series"]:
        if kind == "line":
            (ln,) = ax.plot(s["line_x"], s["line_y"], "-", linewidth=1.8, label=s["label"])
            ax.scatter(s["x_pos"], s["y"], s=26, color=ln.get_color(), zorder=3)
        else:
            ax.scatter(s["x_pos"], s["y"], s=30, alpha=0.85, label=s["label"])
    if data["categories"] is not None:
        labels, folder = short_categories(data["categories"])
        ax.set_xticks(np.arange(n_cat))
        long = n_cat > 6 or max(len(c) for c in labels) > 10
        ax.set_xticklabels(labels, rotation=60 if long else 0, ha="right" if long else "center",
                           fontsize=7 if n_cat > 30 else 9)
        ax.set_xlabel(f"{x} (in {folder}/)" if folder else x)
    else:
        ax.set_xlabel(sc.metric_axis_label(x))
    ax.set_ylabel(sc.metric_axis_label(y))
    by = f" by {group}" if group else ""
    ax.set_title(f"{y} vs {x}{by}\n{os.path.basename(path)}: {data['rows']} sweep point(s) with status ok",
                 fontsize=11)
    ax.grid(True, alpha=0.3)
    if group is not None or len(data["series"]) > 1:
        ax.legend(fontsize=9, title=group)
    sc.save_figure(fig, output, dpi)


def plot_sweep(path, x, y, group=None, output="sweep.png", kind="line", warn=None):
    """Reads sweep.csv, writes the PNG and returns the plotted data (see sweep_series)."""
    if kind not in ("line", "scatter"):
        raise ValueError(f"kind must be 'line' or 'scatter', got {kind!r}")
    sc.check_output_path(output)
    df = read_sweep(path)
    data = sweep_series(df, path, x, y, group, warn)
    draw(data, path, x, y, group, output, kind)
    return data


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Plot a metric column of a moesim sweep.csv against a swept key, one series per "
                    "value of an optional group column; only rows with status 'ok' are used. "
                    "See the module docstring for details.",
        epilog=sc.EXIT_STATUS_EPILOG)
    parser.add_argument("csv", metavar="SWEEP_CSV", help="sweep.csv (one row per sweep point)")
    parser.add_argument("--x", required=True, metavar="COLUMN", help="column on the x axis (e.g. parallel.mode)")
    parser.add_argument("--y", required=True, metavar="COLUMN", help="numeric column on the y axis (e.g. mean_ttft_ms)")
    parser.add_argument("--group", metavar="COLUMN", default=None, help="one series per value of this column")
    parser.add_argument("--output", "-o", required=True, metavar="PNG", help="plot to write (PNG)")
    parser.add_argument("--kind", choices=("line", "scatter"), default="line",
                        help="line (mean y per x joined, points marked; default) or scatter")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        data = plot_sweep(args.csv, args.x, args.y, args.group, args.output, args.kind,
                          sc.stderr_warn(PROG))
    except InputError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    names = ", ".join(f"{s['label']} ({len(s['y'])})" for s in data["series"])
    print(f"{args.y} vs {args.x}: {data['rows']} ok row(s) in {len(data['series'])} series: {names}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
