#!/usr/bin/python3
"""A serving metric against the real expert-load imbalance, Baseline (TP) vs DefaultAll2All (EP).

Inputs, per implementation: a results folder of vLLM benchmark results, one ``<index>.json`` per
dataset (``007.json``), and a real-imbalance file mapping ``gates_logs_<index>`` to the dataset's
measured coefficient of variation of expert loads (``*_real_imbalance.json`` or
``*_real_imbalance_aggregated.json``). A result and an imbalance entry belong together when their
integer indices are equal (``007.json`` <-> ``gates_logs_07``); results without an entry (and
entries without a result) are left out with a warning on stderr.

For each implementation, with x_i the CV and y_i the metric (``--metric``, default
``mean_tpot_ms``) of dataset i:

    IQR filter (unless --no-outlier-filter), Q1/Q3 = numpy.percentile(y, [25, 75]) (linear):
        keep i  iff  Q1 - k * IQR <= y_i <= Q3 + k * IQR,   IQR = Q3 - Q1,  k = --iqr-k (1.5)
    least-squares line through the kept points (numpy.polyfit(x, y, 1)):
        slope     = sum (x_i - mean x)(y_i - mean y) / sum (x_i - mean x)^2
        intercept = mean y - slope * mean x
    Pearson r = sum (x_i - mean x)(y_i - mean y) / sqrt(sum (x_i - mean x)^2 * sum (y_i - mean y)^2)

The PNG shows both implementations' kept points with their lines (slope and r in the legend). A
table of points, kept, dropped, slope, intercept and r per implementation is printed on stdout.

Usage:
    plot_metrics_vs_real_imbalance.py --baseline-imbalance baseline_real_imbalance.json \\
        --baseline-results baseline_results_json \\
        --all2all-imbalance default_all2all_real_imbalance.json \\
        --all2all-results default_all2all_results_json \\
        [--metric mean_tpot_ms] --output tpot_vs_real_imbalance.png [--no-outlier-filter] [--iqr-k 1.5]

Exit status: 0 on success, 1 on bad input (the message names the file and what is wrong),
2 on a command-line error.
"""

import os
import sys

import study_common as sc
from study_common import InputError

PROG = "plot_metrics_vs_real_imbalance.py"
XLABEL = "real load imbalance (CV of expert loads)"


def real_imbalance_points(results, imbalance, metric, results_dir, imbalance_file, warn=None):
    """{index: (cv, metric)} for the indices present in both `results` (load_results_dir) and
    `imbalance` (load_imbalance). Unmatched indices are reported through warn(message)."""
    warn = warn or (lambda msg: None)
    only_results = sorted(set(results) - set(imbalance))
    only_imbalance = sorted(set(imbalance) - set(results))
    if only_results:
        warn(f"{imbalance_file}: no gates_logs entry for dataset index(es) "
             f"{', '.join(map(str, only_results))} of {results_dir}; left out")
    if only_imbalance:
        warn(f"{results_dir}: no result file for dataset index(es) "
             f"{', '.join(map(str, only_imbalance))} of {imbalance_file}; left out")
    common = {i: results[i] for i in results if i in imbalance}
    if not common:
        raise InputError(f"{imbalance_file}: no dataset index in common with {results_dir} "
                         f"(results {sorted(results)}, imbalance entries {sorted(imbalance)})")
    return sc.metric_points(common, metric, lambda index, _rf: imbalance[index])


def load_series(label, imbalance_file, results_dir, metric, outlier_filter=True, iqr_k=1.5, warn=None):
    """One implementation's Series (see study_common.make_series) of metric vs real CV."""
    imbalance = sc.load_imbalance(imbalance_file)
    results = sc.load_results_dir(results_dir)
    points = real_imbalance_points(results, imbalance, metric, results_dir, imbalance_file, warn)
    return sc.make_series(label, points, outlier_filter, iqr_k)


def plot_metric_vs_real_imbalance(baseline_imbalance, baseline_results, all2all_imbalance,
                                  all2all_results, metric="mean_tpot_ms", output="plot.png",
                                  outlier_filter=True, iqr_k=1.5, warn=None):
    """Loads both implementations, fits them, writes the PNG; returns [baseline, all2all] Series."""
    sc.check_output_path(output)
    series = [
        load_series(sc.BASELINE_LABEL, baseline_imbalance, baseline_results, metric,
                    outlier_filter, iqr_k, warn),
        load_series(sc.ALL2ALL_LABEL, all2all_imbalance, all2all_results, metric,
                    outlier_filter, iqr_k, warn),
    ]
    xlabel = XLABEL
    if all("aggregated" in os.path.basename(f) for f in (baseline_imbalance, all2all_imbalance)):
        xlabel = "real load imbalance (aggregated CV of expert loads)"
    unit = sc.metric_unit(metric)
    sc.draw_comparison(series, metric, "real expert-load imbalance", xlabel, output,
                       f"{unit}/CV" if unit else "per unit CV", outlier_filter, iqr_k)
    return series


def build_parser():
    return sc.fit_plot_parser(
        PROG,
        "Scatter a vLLM benchmark metric against the real expert-load imbalance (CV) "
        "for Baseline (TP) and DefaultAll2All (EP), with IQR outlier filtering and a "
        "least-squares line per implementation. See the module docstring for formulas.",
        [("--baseline-imbalance", "FILE", "baseline_real_imbalance.json (gates_logs_<index> -> CV)"),
         ("--baseline-results", "DIR", "baseline_results_json/ (one <index>.json per dataset)"),
         ("--all2all-imbalance", "FILE", "default_all2all_real_imbalance.json (gates_logs_<index> -> CV)"),
         ("--all2all-results", "DIR", "default_all2all_results_json/ (one <index>.json per dataset)")])


def main(argv=None):
    def plot(args):
        return plot_metric_vs_real_imbalance(
            args.baseline_imbalance, args.baseline_results, args.all2all_imbalance,
            args.all2all_results, args.metric, args.output, not args.no_outlier_filter,
            args.iqr_k, sc.stderr_warn(PROG))

    return sc.fit_plot_main(PROG, build_parser(), argv, plot, "real load imbalance (CV)")


if __name__ == "__main__":
    sys.exit(main())
