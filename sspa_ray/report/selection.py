"""SSM's selection, seen: selection.png and selection_gallery.png beside an ablation's tables.

- With ground truth (the synthetic benchmark): one panel per row that runs SSM with aux data,
  SSM's precision, recall and kept share per epoch (mean over seeds), against the aux base rate
  (what keeping at random would reach).
- Without it: the share of each class of the given labels that SSM kept at the end, per row.
- The gallery (the paper's Figure 6) shows aux faces that one trial kept and rejected, with their
  given and, on the synthetic benchmark, true labels. It is drawn for the last row that runs SSM,
  from the trial of its lowest seed, when the trial folder is on a local path.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sspa_ray.labels import CLASSES
from sspa_ray.outputs import SELECTION_FILE, SELECTION_GALLERY, SELECTION_PLOT, Status
from sspa_ray.specs.ablation import AblationSpec

SERIES = {"history.selection_precision": "precision", "history.selection_recall": "recall",
          "history.clean_share": "kept share"}


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _selecting(results: pd.DataFrame) -> pd.DataFrame:
    """Completed trials that ran SSM on aux data (SSPA-JT's; the other methods report no clean share)."""
    if "history.clean_share" not in results or "status" not in results:
        return results.iloc[0:0]
    done = results[(results["status"] == Status.COMPLETED) & results["modules.ssm"].astype(bool)]
    return done[[_finite(v) for v in done.get("clean_share", pd.Series(np.nan, index=done.index))]]


def plot_selection(spec: AblationSpec, results: pd.DataFrame, exp_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = _selecting(results)
    if not len(trials):
        return {}
    groups = list(trials.groupby("row", sort=True))
    truth = "aux_base_rate" in trials and trials["aux_base_rate"].map(_finite).all()
    cols = min(4, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False, sharey=True)
    for ax, (row, trials_of_row) in zip(axes.flat, groups):
        ax.set_title(f"{spec.row_name(int(row))} (n={len(trials_of_row)})", fontsize=8)
        if truth:
            for column, name in SERIES.items():
                series = [np.asarray(v, dtype=float) for v in trials_of_row[column]]
                length = min(len(s) for s in series)
                mean = np.mean([s[:length] for s in series], axis=0)
                ax.plot(np.arange(1, length + 1), mean, marker=".", label=name)
            ax.axhline(float(trials_of_row["aux_base_rate"].mean()), color="grey", linestyle="--", label="aux base rate")
            selection_epochs = int(trials_of_row["train.selection_epochs"].iloc[0])
            ax.axvline(selection_epochs + 0.5, color="grey", linewidth=0.5)
            ax.set_xlabel("epoch (line: end of selection)", fontsize=8)
        else:
            kept = [float(trials_of_row[f"kept.{c}"].mean()) if f"kept.{c}" in trials_of_row else np.nan for c in CLASSES]
            ax.bar(range(len(CLASSES)), kept)
            ax.set_xticks(range(len(CLASSES)), [c[:4] for c in CLASSES], fontsize=7)
            ax.set_xlabel("given label", fontsize=8)
        ax.set_ylim(0, 1.02)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    if truth:
        axes.flat[0].legend(fontsize=7, loc="lower left")
        fig.suptitle(f"{spec.title}: SSM's aux selection per epoch (mean over seeds)", fontsize=10)
    else:
        fig.suptitle(f"{spec.title}: share of each aux class SSM kept (mean over seeds)", fontsize=10)
    fig.tight_layout()
    path = Path(exp_dir) / SELECTION_PLOT
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return {"selection": path}


def draw_gallery(results: pd.DataFrame, exp_dir: Path, experiment: dict[str, Any]) -> dict[str, Path]:
    """The paper's Figure 6 from one trial's selection.csv, when its folder is local."""
    from sspa_ray.data import data_root, synthetic
    from sspa_ray.data.gallery import draw_selection_gallery

    trials = _selecting(results)
    storage = str(experiment.get("experiment_path") or "")
    if not len(trials) or "trial_dir" not in trials or not storage or "://" in storage:
        return {}
    last = trials[trials["row"] == trials["row"].max()].sort_values("train.seed").iloc[0]
    selection_csv = Path(storage) / str(last["trial_dir"]) / SELECTION_FILE
    if not selection_csv.is_file():
        return {}
    if last["data.target"] == "synthetic":
        root = synthetic.ensure(int(last["data.synthetic_seed"]), float(last["data.synthetic_scale"]), progress=False)
        truth = synthetic.read_ground_truth(root)
    else:
        root, truth = data_root(last.get("data.root")), None
    path = draw_selection_gallery(selection_csv, root, Path(exp_dir) / SELECTION_GALLERY, dataset=str(last["data.aux"]),
                                  truth=truth, seed=int(last["train.seed"]))
    return {"selection_gallery": path}


def selection_figures(spec: AblationSpec, results: pd.DataFrame, exp_dir: Path,
                      experiment: dict[str, Any]) -> dict[str, Path]:
    """Both figures; an experiment without SSM rows or with remote storage gets fewer."""
    return {**plot_selection(spec, results, exp_dir), **draw_gallery(results, exp_dir, experiment)}

