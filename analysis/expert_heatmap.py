#!/usr/bin/python3
"""Layer x expert heatmap of expert activation shares.

Reads ``moe_expert_activations.csv`` (columns ``layer_idx,expert_id,activation_count,percentage``,
written by moesim in ``<run>/moe_expert_tracking/``, as vLLM's MoE expert profiler does) and draws
a heatmap PNG of the ``percentage`` column: one row per MoE layer (layer_idx ascending, top to
bottom), one column per expert (expert_id ascending, left to right).

For layer l and expert e, with c[l, e] the tokens routed to e in l over the whole run:

    percentage[l, e] = 100 * c[l, e] / sum_e' c[l, e']       (share of the layer's activations)

so every row sums to 100 % and a perfectly balanced layer of E experts shows 100 / E everywhere.
The colour scale runs from the smallest to the largest share in the file; the title gives the
run (or model) name and the uniform share 100 / E for reference. Cells absent from the CSV are
left blank. The figure grows with the number of experts and layers (8 x 32 and 256 x 58 both
stay legible); cells are not annotated.

Usage: expert_heatmap.py CSV --output heatmap.png [--title NAME] [--dpi N]

Exit status: 0 on success, 1 on bad input (the message names the file and what is wrong),
2 on a command-line error.
"""

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

import study_common as sc  # noqa: E402
from study_common import InputError  # noqa: E402

COLUMNS = ["layer_idx", "expert_id", "activation_count", "percentage"]


def default_title(csv_path):
    """The run folder's name: the parent of moe_expert_tracking/, else the CSV's own folder."""
    folder = os.path.dirname(os.path.abspath(csv_path))
    if os.path.basename(folder) == "moe_expert_tracking":
        folder = os.path.dirname(folder)
    return os.path.basename(folder) or folder


def read_activations(path):
    """The percentage matrix [layers x experts] (NaN where a cell is missing), layer ids, expert ids."""
    df = sc.read_csv_file(path, "moe_expert_activations.csv", f"the header {','.join(COLUMNS)}")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}, "
                         f"found {','.join(df.columns)}")
    if df.empty:
        raise InputError(f"{path}: no data rows")
    for c in COLUMNS:
        num = pd.to_numeric(df[c], errors="coerce")
        bad = num.isna() | ~np.isfinite(num.astype(float))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{path}: data row {i + 1} (line {i + 2}): column {c} is {df[c].iloc[i]!r}, "
                             f"expected a number")
        df[c] = num
    for c in ("layer_idx", "expert_id"):
        if (df[c] < 0).any() or (df[c] != df[c].round()).any():
            i = int(np.flatnonzero(((df[c] < 0) | (df[c] != df[c].round())).to_numpy())[0])
            raise InputError(f"{path}: data row {i + 1} (line {i + 2}): {c} must be a non-negative integer, "
                             f"got {df[c].iloc[i]}")
        df[c] = df[c].astype(np.int64)
    dup = df.duplicated(["layer_idx", "expert_id"])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputError(f"{path}: data row {i + 1} (line {i + 2}): layer_idx {df['layer_idx'].iloc[i]}, "
                         f"expert_id {df['expert_id'].iloc[i]} appears more than once")
    grid = df.pivot(index="layer_idx", columns="expert_id", values="percentage").sort_index().sort_index(axis=1)
    return grid.to_numpy(dtype=float), grid.index.to_numpy(), grid.columns.to_numpy()


def figure_size(n_layers, n_experts):
    """Inches: 0.35 in per expert up to 32 experts (0.08 beyond), 0.24 in per layer, kept within
    7..16 x 5..11 so that the text stays readable when the picture is shown whole."""
    width = min(16.0, max(7.0, 2.8 + n_experts * (0.35 if n_experts <= 32 else 0.08)))
    height = min(11.0, max(5.0, 1.8 + n_layers * 0.24))
    return width, height


def index_formatter(labels):
    """Tick at position i shows labels[i] (the real layer / expert id)."""
    def fmt(x, _pos):
        i = int(round(x))
        return str(labels[i]) if 0 <= i < len(labels) and abs(x - i) < 1e-6 else ""
    return FuncFormatter(fmt)


def draw(values, layers, experts, title, output, dpi):
    n_layers, n_experts = values.shape
    fig, ax = plt.subplots(figsize=figure_size(n_layers, n_experts), constrained_layout=True)
    masked = np.ma.masked_invalid(values)
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("white")
    im = ax.imshow(masked, aspect="auto", interpolation="nearest", cmap=cmap, origin="upper")
    cbar = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02, aspect=40)
    cbar.set_label("share of layer's activations (%)")

    for axis, labels, most in ((ax.xaxis, experts, 32), (ax.yaxis, layers, 40)):
        if len(labels) <= most:
            axis.set_ticks(np.arange(len(labels)))
            axis.set_ticklabels([str(v) for v in labels])
        else:
            axis.set_major_locator(MaxNLocator(nbins=min(most, 24), integer=True))
            axis.set_major_formatter(index_formatter(labels))
    if n_experts <= 32:
        ax.tick_params(axis="x", labelsize=9)
    ax.set_xlabel("expert_id")
    ax.set_ylabel("layer_idx (MoE layer)")
    uniform = 100.0 / n_experts
    lo, hi = np.nanmin(values), np.nanmax(values)
    ax.set_title(f"{title}: expert activation share per layer\n"
                 f"{n_experts} experts x {n_layers} layers, uniform share {uniform:.2f}%, "
                 f"range {lo:.2f}% to {hi:.2f}%", fontsize=11)
    sc.save_figure(fig, output, dpi)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Draw a layer x expert heatmap (PNG) of the 'percentage' column of a moesim "
                    "moe_expert_activations.csv. See the module docstring for details.",
        epilog=sc.EXIT_STATUS_EPILOG)
    parser.add_argument("csv", metavar="CSV", help="moe_expert_activations.csv (in <run>/moe_expert_tracking/)")
    parser.add_argument("--output", "-o", required=True, metavar="PNG", help="heatmap to write (PNG)")
    parser.add_argument("--title", default=None,
                        help="model or run name for the title (default: the CSV's run folder name)")
    parser.add_argument("--dpi", type=int, default=150, help="resolution of the PNG (default: 150)")
    args = parser.parse_args(argv)
    if args.dpi < 20 or args.dpi > 1200:
        parser.error(f"--dpi must be between 20 and 1200, got {args.dpi}")

    try:
        values, layers, experts = read_activations(args.csv)
        title = args.title if args.title is not None else default_title(args.csv)
        draw(values, layers, experts, title, args.output, args.dpi)
    except InputError as e:
        print(f"expert_heatmap.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
