"""Shared helpers of the analysis scripts: the imbalance-study plots (plot_metrics_vs_*.py),
sweep_plot.py, power_thermal_timeline.py, expert_heatmap.py and compute_real_imbalance.py.

A study directory holds, per implementation, one vLLM benchmark result per dataset index
(``<impl>_results_json/{index:03d}.json``) and a mapping of real load imbalance per dataset
(``<impl>_real_imbalance.json``: ``{"gates_logs_07": 0.21, ...}``). Results and imbalance
entries are matched by the integer dataset index (``007.json`` <-> ``gates_logs_07``).

Outlier filter (per implementation, on the metric values y_1..y_n), with Q1 and Q3 the 25th and
75th percentiles by numpy's linear interpolation (``numpy.percentile``, method "linear"):

    IQR  = Q3 - Q1
    keep = Q1 - k * IQR <= y_i <= Q3 + k * IQR           (k = 1.5 by default)

Least-squares line through the kept points (x_i, y_i), as ``numpy.polyfit(x, y, 1)``:

    slope     = sum_i (x_i - mean(x)) (y_i - mean(y)) / sum_i (x_i - mean(x))^2
    intercept = mean(y) - slope * mean(x)

Pearson correlation of the kept points:

    r = sum_i (x_i - mean(x)) (y_i - mean(y)) / sqrt(sum_i (x_i - mean(x))^2 * sum_i (y_i - mean(y))^2)

The fit needs at least two kept points with distinct x; r also needs y not constant. Otherwise
the value is NaN (printed as "n/a").

Every loader raises InputError with a message that names the file and what is wrong.
"""

import argparse
import json
import math
import os
import re
import sys
from collections import namedtuple
from dataclasses import dataclass, field

import numpy as np

RESULTS_FILE_RE = re.compile(r"(\d+)\.json")
IMBALANCE_KEY_RE = re.compile(r"gates_logs_(\d+)")

BASELINE_LABEL = "Baseline (TP)"
ALL2ALL_LABEL = "DefaultAll2All (EP)"
SERIES_COLORS = {BASELINE_LABEL: "tab:blue", ALL2ALL_LABEL: "tab:orange"}


class InputError(Exception):
    """Bad input: the message names the file and what is wrong."""


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_json(path):
    """The parsed JSON document at `path`; InputError naming the file when it cannot be read."""
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected a JSON file")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: malformed JSON: not UTF-8 text ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: malformed JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def read_json_object(path):
    """read_json(path), which must be a JSON object; InputError naming the file otherwise."""
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object at the top level, got {type(doc).__name__}")
    return doc


def require_dir(folder):
    """InputError naming `folder` when it does not exist or is not a directory."""
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: {'not a directory' if os.path.exists(folder) else 'no such directory'}")


def numbered_files(folder, pattern, what, none_message):
    """{k: file name} for the files of `folder` whose whole name matches the compiled regex
    `pattern` (its group 1 being the integer k), in ascending k order.

    Other names (and subfolders) are ignored. Raises InputError naming the folder when it is
    missing, when two files claim the same k ("both A and B claim <what> <k>"), or, with
    `none_message`, when no file matches.
    """
    require_dir(folder)
    names = {}
    for name in os.listdir(folder):
        m = pattern.fullmatch(name)
        if not m or not os.path.isfile(os.path.join(folder, name)):
            continue
        k = int(m.group(1))
        if k in names:
            raise InputError(f"{folder}: both {names[k]} and {name} claim {what} {k}")
        names[k] = name
    if not names:
        raise InputError(f"{folder}: {none_message}")
    return {k: names[k] for k in sorted(names)}


def read_csv_file(path, expected, empty_expected, **read_csv_kwargs):
    """pandas.read_csv(path, **read_csv_kwargs) with the column names stripped of blanks.

    Raises InputError naming the file when it is a directory ("expected <expected>"), missing,
    empty ("expected <empty_expected>") or cannot be parsed as CSV.
    """
    import pandas as pd

    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected {expected}")
    try:
        df = pd.read_csv(path, **read_csv_kwargs)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty file, expected {empty_expected}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        raise InputError(f"{path}: cannot parse as CSV: {e}") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def stderr_warn(prog):
    """A warn(message) callback that prints "<prog>: warning: <message>" to stderr."""
    def warn(msg):
        print(f"{prog}: warning: {msg}", file=sys.stderr)
    return warn


ResultFile = namedtuple("ResultFile", "path data")
ResultFile.__doc__ = "One benchmark result: the file it came from and its JSON object."


def load_results_dir(folder):
    """{dataset index: ResultFile(path, data)} for the ``<index>.json`` files of `folder`
    (e.g. 007.json -> 7), in ascending index order.

    Files whose names are not digits + ``.json`` are ignored. Raises InputError when the folder is
    missing, holds no such file, two files claim the same index, or a file is not a JSON object.
    """
    names = numbered_files(folder, RESULTS_FILE_RE, "dataset index",
                           "no result files named <index>.json (e.g. 007.json)")
    results = {}
    for index, name in names.items():
        path = os.path.join(folder, name)
        results[index] = ResultFile(path, read_json_object(path))
    return results


def load_imbalance(path):
    """{dataset index: CV} from a ``*_real_imbalance*.json`` object (``gates_logs_07`` -> 7).

    Raises InputError when the file is unreadable, not an object, empty, has a key that is not
    ``gates_logs_<index>``, two keys with the same index, or a value that is not a finite number >= 0.
    """
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object mapping gates_logs_<index> to a CV, "
                         f"got {type(doc).__name__}")
    if not doc:
        raise InputError(f"{path}: empty object, expected gates_logs_<index> entries")
    keys = {}
    out = {}
    for key, value in doc.items():
        m = IMBALANCE_KEY_RE.fullmatch(key)
        if not m:
            raise InputError(f"{path}: key {key!r} is not of the form gates_logs_<index> "
                             f"(is this a real-imbalance file?)")
        index = int(m.group(1))
        if index in keys:
            raise InputError(f"{path}: both {keys[index]!r} and {key!r} claim dataset index {index}")
        keys[index] = key
        if not _is_number(value) or not math.isfinite(value):
            raise InputError(f"{path}: {key} is {value!r}, expected a finite number (the CV)")
        if value < 0:
            raise InputError(f"{path}: {key} is {value!r}, a CV cannot be negative")
        out[index] = float(value)
    return dict(sorted(out.items()))


def numeric_keys(record):
    """The keys of a result object whose values are numbers (for 'available metrics' messages)."""
    return sorted(k for k, v in record.items() if _is_number(v))


def record_number(record, key, path, what="metric"):
    """record[key] as a float; InputError naming the file when it is missing or not a finite number."""
    if key not in record:
        avail = ", ".join(numeric_keys(record)) or "(none)"
        raise InputError(f"{path}: no {what} {key!r}; numeric keys available: {avail}")
    value = record[key]
    if not _is_number(value) or not math.isfinite(value):
        raise InputError(f"{path}: {what} {key!r} is {value!r}, expected a finite number")
    return float(value)


def metric_unit(name):
    """The unit implied by a metric name (its last dotted part, so ``step_time_breakdown.moe_s``
    counts as ``moe_s``): ms for *_ms, s for *_s and duration, bytes for *_bytes, tokens/s or
    requests/s for throughputs, '' when nothing is implied."""
    n = name.lower().rsplit(".", 1)[-1]
    if n.endswith("_ms"):
        return "ms"
    if n.endswith("_s") or n == "duration":
        return "s"
    if n.endswith("_bytes"):
        return "bytes"
    if "throughput" in n:
        return "requests/s" if "request" in n else "tokens/s"
    return ""


def metric_axis_label(name):
    """Axis label: the metric name with its unit in parentheses when one is implied."""
    unit = metric_unit(name)
    return f"{name} ({unit})" if unit else name


def iqr_bounds(values, k=1.5):
    """(Q1 - k*IQR, Q3 + k*IQR) with Q1, Q3 from numpy.percentile (linear interpolation)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return (math.nan, math.nan)
    q1, q3 = np.percentile(v, [25.0, 75.0])
    iqr = q3 - q1
    return (float(q1 - k * iqr), float(q3 + k * iqr))


def iqr_keep_mask(values, k=1.5):
    """Boolean mask: True where the value lies within iqr_bounds(values, k) (bounds included)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return np.zeros(0, dtype=bool)
    lo, hi = iqr_bounds(v, k)
    return (v >= lo) & (v <= hi)


def linear_fit(x, y):
    """(slope, intercept) of numpy.polyfit(x, y, 1); NaNs when there are fewer than two points
    or x is constant."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.size < 2 or np.all(x == x[0]):
        return (math.nan, math.nan)
    slope, intercept = np.polyfit(x, y, 1)
    return (float(slope), float(intercept))


def pearson_r(x, y):
    """Pearson correlation of x and y; NaN when either is constant or there are < 2 points."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


@dataclass
class Series:
    """One implementation's points: all of them, the outlier mask and the fit of the kept ones."""
    label: str
    indices: np.ndarray           # dataset indices, ascending
    x: np.ndarray
    y: np.ndarray
    keep: np.ndarray              # bool mask over the points
    slope: float = math.nan
    intercept: float = math.nan
    r: float = math.nan
    bounds: tuple = field(default=(math.nan, math.nan))   # (low, high) of the IQR filter, NaN if off

    @property
    def n_points(self):
        return int(self.x.size)

    @property
    def n_kept(self):
        return int(self.keep.sum())

    @property
    def n_dropped(self):
        return self.n_points - self.n_kept

    @property
    def kept_indices(self):
        return [int(i) for i in self.indices[self.keep]]

    @property
    def dropped_indices(self):
        return [int(i) for i in self.indices[~self.keep]]


def make_series(label, points, outlier_filter=True, iqr_k=1.5):
    """Series from {index: (x, y)}: IQR filter on y (unless outlier_filter is False), then the
    least-squares line and Pearson r of the kept points."""
    indices = np.array(sorted(points), dtype=np.int64)
    x = np.array([points[i][0] for i in indices], dtype=float)
    y = np.array([points[i][1] for i in indices], dtype=float)
    if outlier_filter:
        bounds = iqr_bounds(y, iqr_k)
        keep = iqr_keep_mask(y, iqr_k)
    else:
        bounds = (math.nan, math.nan)
        keep = np.ones(y.size, dtype=bool)
    slope, intercept = linear_fit(x[keep], y[keep])
    return Series(label=label, indices=indices, x=x, y=y, keep=keep, slope=slope,
                  intercept=intercept, r=pearson_r(x[keep], y[keep]), bounds=bounds)


def metric_points(results, metric, x_of):
    """{index: (x, y)} with y = the metric of each result (results as from load_results_dir);
    x_of(index, result_file) gives x, or None to leave the result out. Errors name the file."""
    points = {}
    for index, rf in results.items():
        x = x_of(index, rf)
        if x is None:
            continue
        points[index] = (x, record_number(rf.data, metric, rf.path))
    return points


def format_number(v, width=12):
    """`v` right-aligned in `width` characters with 6 significant digits; "n/a" when not finite."""
    return f"{'n/a':>{width}}" if not math.isfinite(v) else f"{v:>{width}.6g}"


def format_table(series_list):
    """Per implementation: points, kept, dropped, slope, intercept, Pearson r (text table)."""
    lines = [f"{'implementation':<22}{'points':>7}{'kept':>6}{'dropped':>8}"
             f"{'slope':>14}{'intercept':>14}{'pearson_r':>11}"]
    for s in series_list:
        lines.append(f"{s.label:<22}{s.n_points:>7}{s.n_kept:>6}{s.n_dropped:>8}"
                     f"{format_number(s.slope, 14)}{format_number(s.intercept, 14)}{format_number(s.r, 11)}")
    return "\n".join(lines)


def draw_scatter_fits(series_list, xlabel, ylabel, title, output, slope_unit="", dpi=150):
    """Scatter of each series' kept points with its least-squares line (slope in the legend);
    writes the PNG `output`. Dropped outliers are not drawn; their count is in the legend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6), constrained_layout=True)
    for s in series_list:
        color = SERIES_COLORS.get(s.label)
        xs, ys = s.x[s.keep], s.y[s.keep]
        extra = f", {s.n_dropped} outlier{'s' if s.n_dropped != 1 else ''} dropped" if s.n_dropped else ""
        ax.scatter(xs, ys, s=28, alpha=0.8, color=color, edgecolors="none",
                   label=f"{s.label} (n={s.n_kept}{extra})")
        if math.isfinite(s.slope):
            gx = np.linspace(xs.min(), xs.max(), 50)
            unit = f" {slope_unit}" if slope_unit else ""
            ax.plot(gx, s.slope * gx + s.intercept, color=color, linewidth=1.8,
                    label=f"{s.label} fit: slope = {s.slope:.4g}{unit}, r = {s.r:.3f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9)
    save_figure(fig, output, dpi)


def save_figure(fig, output, dpi):
    """Writes the matplotlib figure `fig` to `output` and closes it; InputError naming `output`
    when it cannot be written."""
    import matplotlib.pyplot as plt

    try:
        fig.savefig(output, dpi=dpi)
    except OSError as e:
        raise InputError(f"{output}: cannot write: {e.strerror or e}") from None
    finally:
        plt.close(fig)


def draw_comparison(series_list, metric, versus, xlabel, output, slope_unit, outlier_filter=True,
                    iqr_k=1.5):
    """draw_scatter_fits of the [baseline, all2all] Series of a plot_metrics_vs_*.py script, titled
    "<metric> vs <versus>" with the implementations and the outlier filter used."""
    filt = f"IQR outlier filter k={iqr_k:g}" if outlier_filter else "no outlier filter"
    title = (f"{metric} vs {versus}\n"
             f"{BASELINE_LABEL} vs {ALL2ALL_LABEL}, least-squares fits, {filt}")
    draw_scatter_fits(series_list, xlabel, metric_axis_label(metric), title, output,
                      slope_unit=slope_unit)


def check_output_path(output):
    """InputError naming `output` when its folder does not exist or it is a directory."""
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise InputError(f"{output}: cannot write: folder {folder} does not exist")
    if os.path.isdir(output):
        raise InputError(f"{output}: is a directory, expected a PNG file name")


# ---------------------------------------------------------------- command line of plot_metrics_vs_*.py

EXIT_STATUS_EPILOG = "Exit status: 0 success, 1 bad input, 2 command-line error."


def fit_plot_parser(prog, description, inputs):
    """ArgumentParser of a plot_metrics_vs_*.py script: the required input options `inputs`
    [(option, metavar, help)] in that order, then --metric, --output/-o, --no-outlier-filter
    and --iqr-k."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=EXIT_STATUS_EPILOG)
    for option, metavar, help_text in inputs:
        parser.add_argument(option, required=True, metavar=metavar, help=help_text)
    parser.add_argument("--metric", default="mean_tpot_ms", metavar="NAME",
                        help="result key to plot on y (default: mean_tpot_ms)")
    parser.add_argument("--output", "-o", required=True, metavar="PNG", help="plot to write (PNG)")
    parser.add_argument("--no-outlier-filter", action="store_true",
                        help="keep every point (no IQR filter)")
    parser.add_argument("--iqr-k", type=float, default=1.5, metavar="K",
                        help="drop points outside [Q1 - K*IQR, Q3 + K*IQR] (default: 1.5)")
    return parser


def fit_plot_main(prog, parser, argv, plot, versus):
    """main() of a plot_metrics_vs_*.py script: parses `argv` with `parser` (fit_plot_parser),
    calls plot(args) for the plotted Series, then prints "<metric> vs <versus>; <filter>", the
    format_table and "wrote <output>". Returns the exit status: 0, or 1 after printing
    "<prog>: error: <message>" to stderr on an InputError (a bad --iqr-k exits 2 via argparse)."""
    args = parser.parse_args(argv)
    if not args.iqr_k >= 0:
        parser.error(f"--iqr-k must be >= 0, got {args.iqr_k}")
    try:
        series = plot(args)
    except InputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    filt = f"IQR filter k={args.iqr_k:g}" if not args.no_outlier_filter else "no outlier filter"
    print(f"{args.metric} vs {versus}; {filt}")
    print(format_table(series))
    print(f"wrote {args.output}")
    return 0
