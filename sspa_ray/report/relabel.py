"""SCN's relabelling, seen against the ground truth: relabel.png beside SSM's selection plot.

One panel per row that runs SCN on aux data with ground truth (the synthetic benchmark), per epoch
and averaged over seeds: the share of the aux set relabelled, the share of those relabels that are
the true label, and the noise rate of the low-importance groups, against the aux set's own noise
rate (1 - aux base rate, what a group drawn at random would hold). Its footer is the provenance
line, as every plot's (plots.save_figure).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sspa_ray.outputs import RELABEL_PLOT, Status
from sspa_ray.report.plots import math_text, save_figure
from sspa_ray.specs.ablation import AblationSpec

# The history columns of SCN's relabelling -> the label of its curve in relabel.png.
RELABEL_CURVES = {"history.relabelled_share": "aux share relabelled", "history.relabel_precision": "relabels that are right",
          "history.low_importance_noise": "noise rate of the low-importance groups"}


def _relabelling(results: pd.DataFrame) -> pd.DataFrame:
    """Completed trials that ran SCN on aux data with ground truth."""
    if "history.relabel_precision" not in results or "method.name" not in results:
        return results.iloc[0:0]
    done = results[(results["status"] == Status.COMPLETED) & (results["method.name"] == "scn")]
    return done[[len(v) > 0 and any(x is not None and math.isfinite(x) for x in v)
                 for v in done["history.relabel_precision"]]]


def plot_relabelling(spec: AblationSpec, results: pd.DataFrame, exp_dir: Path, *, footer: str) -> dict[str, Path]:
    trials = _relabelling(results)
    if not len(trials):
        return {}
    groups = list(trials.groupby("row", sort=True))
    fig = Figure(figsize=(4.2 * len(groups), 3.3))
    axes = fig.subplots(1, len(groups), squeeze=False, sharey=True)
    for ax, (row, of_row) in zip(axes.flat, groups, strict=True):
        ax.set_title(f"{math_text(spec.row_name(int(row)))} (n={len(of_row)})", fontsize=8)
        for column, name in RELABEL_CURVES.items():
            series = [np.asarray([np.nan if x is None else x for x in v], dtype=float) for v in of_row[column]]
            length = min(len(s) for s in series)
            stacked = np.array([s[:length] for s in series])
            seen = np.isfinite(stacked).sum(axis=0)  # epochs before the first relabel have no precision yet
            mean = np.where(seen > 0, np.nansum(stacked, axis=0) / np.maximum(seen, 1), np.nan)
            ax.plot(np.arange(1, length + 1), mean, marker=".", label=name)
        ax.axhline(1 - float(of_row["aux_base_rate"].mean()), color="grey", linestyle="--", label="aux noise rate")
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("share of aux samples", fontsize=8)
        ax.set_ylim(0, 1.02)
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{math_text(spec.title)}: SCN's relabelling against the true labels (mean over seeds)", fontsize=10)
    return {"relabel": save_figure(fig, Path(exp_dir) / RELABEL_PLOT, footer, formats=("png",), dpi=100)}
