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

import sys

import study_common as sc

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
    unit = sc.metric_unit(metric)
    sc.draw_comparison(series, metric, "predicted imbalance score",
                       f"{SCORE_KEY} (predicted expert-load imbalance)", output,
                       f"{unit} per unit score" if unit else "per unit score", outlier_filter, iqr_k)
    return series


def build_parser():
    return sc.fit_plot_parser(
        PROG,
        "Scatter a vLLM benchmark metric against each dataset's predicted_imbalance_score "
        "for Baseline (TP) and DefaultAll2All (EP), with IQR outlier filtering and a "
        "least-squares line per implementation. See the module docstring for formulas.",
        [("--baseline-results", "DIR", "baseline_results_json/ (one <index>.json per dataset)"),
         ("--all2all-results", "DIR", "default_all2all_results_json/ (one <index>.json per dataset)")])


def main(argv=None):
    def plot(args):
        return plot_metric_vs_imbalance_score(args.baseline_results, args.all2all_results,
                                              args.metric, args.output,
                                              not args.no_outlier_filter, args.iqr_k)

    return sc.fit_plot_main(PROG, build_parser(), argv, plot, SCORE_KEY)


if __name__ == "__main__":
    sys.exit(main())
