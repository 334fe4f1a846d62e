#!/usr/bin/python3
"""A serving metric against the predicted imbalance score, Baseline (TP) vs DefaultAll2All (EP).

Inputs, per implementation: a results folder of vLLM benchmark results, one ``<index>.json`` per
dataset (``007.json``). Each result carries the dataset's ``predicted_imbalance_score`` (x) next
to the benchmark metrics; ``--metric`` (default ``mean_tpot_ms``) gives y.

For each implementation, with x_i the predicted score and y_i the metric of dataset i:

    IQR filter (unless --no-outlier-filter), Q1/Q3 = numpy.percentile(y, [25, 75]) (linear):
        keep i  iff  Q1 - k * IQR <= y_i <= Q3 + k * IQR,   IQR = Q3 - Q1,  k = --iqr-k (1.5)
    least-squares line through the kept points (numpy.polyfit(x, y, 1)):
        slope     = sum (x_i - mean x)(y_i - mean y) / sum (x_i - mean x)^2
        intercept = mean y - slope * mean x
    Pearson r = sum (x_i - mean x)(y_i - mean y) / sqrt(sum (x_i - mean x)^2 * sum (y_i - mean y)^2)

The PNG shows both implementations' kept points with their lines (slope and r in the legend). A
table of points, kept, dropped, slope, intercept and r per implementation is printed on stdout.

Usage:
    plot_metrics_vs_imbalance_score.py --baseline-results baseline_results_json \\
        --all2all-results default_all2all_results_json [--metric mean_tpot_ms] \\
        --output tpot_vs_score.png [--no-outlier-filter] [--iqr-k 1.5]

Exit status: 0 on success, 1 on bad input (the message names the file and what is wrong),
2 on a command-line error.
"""

import argparse
import sys

import study_common as sc
from study_common import InputError

PROG = "plot_metrics_vs_imbalance_score.py"
SCORE_KEY = "predicted_imbalance_score"


def score_points(results, metric):
    """{index: (predicted_imbalance_score, metric)} for every result (load_results_dir)."""
    return sc.metric_points(results, metric,
                            lambda _index, rf: sc.record_number(rf.data, SCORE_KEY, rf.path, what="key"))


def load_series(label, results_dir, metric, outlier_filter=True, iqr_k=1.5):
    """One implementation's Series (see study_common.make_series) of metric vs predicted score."""
    results = sc.load_results_dir(results_dir)
    return sc.make_series(label, score_points(results, metric), outlier_filter, iqr_k)


def plot_metric_vs_imbalance_score(baseline_results, all2all_results, metric="mean_tpot_ms",
                                   output="plot.png", outlier_filter=True, iqr_k=1.5):
    """Loads both implementations, fits them, writes the PNG; returns [baseline, all2all] Series."""
    sc.check_output_path(output)
    series = [
        load_series(sc.BASELINE_LABEL, baseline_results, metric, outlier_filter, iqr_k),
        load_series(sc.ALL2ALL_LABEL, all2all_results, metric, outlier_filter, iqr_k),
    ]
    filt = f"IQR outlier filter k={iqr_k:g}" if outlier_filter else "no outlier filter"
    title = (f"{metric} vs predicted imbalance score\n"
             f"{sc.BASELINE_LABEL} vs {sc.ALL2ALL_LABEL}, least-squares fits, {filt}")
    unit = sc.metric_unit(metric)
    sc.draw_scatter_fits(series, f"{SCORE_KEY} (predicted expert-load imbalance)",
                         sc.metric_axis_label(metric), title, output,
                         slope_unit=f"{unit} per unit score" if unit else "per unit score")
    return series


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Scatter a vLLM benchmark metric against each dataset's predicted_imbalance_score "
                    "for Baseline (TP) and DefaultAll2All (EP), with IQR outlier filtering and a "
                    "least-squares line per implementation. See the module docstring for formulas.",
        epilog="Exit status: 0 success, 1 bad input, 2 command-line error.")
    parser.add_argument("--baseline-results", required=True, metavar="DIR",
                        help="baseline_results_json/ (one <index>.json per dataset)")
    parser.add_argument("--all2all-results", required=True, metavar="DIR",
                        help="default_all2all_results_json/ (one <index>.json per dataset)")
    parser.add_argument("--metric", default="mean_tpot_ms", metavar="NAME",
                        help="result key to plot on y (default: mean_tpot_ms)")
    parser.add_argument("--output", "-o", required=True, metavar="PNG", help="plot to write (PNG)")
    parser.add_argument("--no-outlier-filter", action="store_true",
                        help="keep every point (no IQR filter)")
    parser.add_argument("--iqr-k", type=float, default=1.5, metavar="K",
                        help="drop points outside [Q1 - K*IQR, Q3 + K*IQR] (default: 1.5)")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.iqr_k >= 0:
        parser.error(f"--iqr-k must be >= 0, got {args.iqr_k}")
    try:
        series = plot_metric_vs_imbalance_score(args.baseline_results, args.all2all_results,
                                                args.metric, args.output,
                                                not args.no_outlier_filter, args.iqr_k)
    except InputError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    filt = f"IQR filter k={args.iqr_k:g}" if not args.no_outlier_filter else "no outlier filter"
    print(f"{args.metric} vs {SCORE_KEY}; {filt}")
    print(sc.format_table(series))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
