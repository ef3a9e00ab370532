"""SSM's selection, seen: selection.png and selection_gallery.png beside an ablation's tables.

- With ground truth (the synthetic benchmark): one panel per row that runs SSM with aux data,
  SSM's precision, recall and kept share per epoch (mean over seeds), against the aux base rate
  (what keeping at random would reach).
- Without it: the share of each class of the given labels that SSM kept at the end, per row.
- The gallery (the paper's Figure 6) shows aux faces that one trial kept and rejected, with their
  given and, on the synthetic benchmark, true labels. It is drawn for the last row that runs SSM,
  from the trial of its lowest seed, when the trial folder is on a local path, and names that trial.

Both carry the provenance line as their footer, as every plot does (plots.save_figure).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sspa_ray.labels import CLASSES
from sspa_ray.outputs import SELECTION_FILE, SELECTION_GALLERY, SELECTION_PLOT, SelectionRow, Source, Status
from sspa_ray.report.aggregate import finite_number
from sspa_ray.report.plots import math_text, save_figure
from sspa_ray.specs.ablation import AblationSpec

# The history columns of SSM's selection -> the label of its curve in selection.png.
SELECTION_CURVES = {"history.selection_precision": "precision", "history.selection_recall": "recall",
          "history.clean_share": "kept share"}


def _selecting(results: pd.DataFrame) -> pd.DataFrame:
    """Completed trials that ran SSM on aux data (SSPA-JT's; the other methods report no clean share)."""
    if "history.clean_share" not in results or "status" not in results:
        return results.iloc[0:0]
    done = results[(results["status"] == Status.COMPLETED) & results["modules.ssm"].astype(bool)]
    return done[[finite_number(v) is not None for v in done.get("clean_share", pd.Series(np.nan, index=done.index))]]


def plot_selection(spec: AblationSpec, results: pd.DataFrame, exp_dir: Path, *, footer: str) -> dict[str, Path]:
    """selection.png, when some row ran SSM on aux data."""
    fig = selection_figure(spec, _selecting(results))
    if fig is None:
        return {}
    return {"selection": save_figure(fig, Path(exp_dir) / SELECTION_PLOT, footer, formats=("png",), dpi=100)}


def selection_figure(spec: AblationSpec, trials: pd.DataFrame) -> Figure | None:
    """One panel per row of `trials` (completed, with SSM): its selection per epoch, or per class."""
    if not len(trials):
        return None
    groups = list(trials.groupby("row", sort=True))
    truth = "aux_base_rate" in trials and trials["aux_base_rate"].map(lambda v: finite_number(v) is not None).all()
    cols = min(4, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig = Figure(figsize=(3.4 * cols, 2.6 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    # The grid has a panel per group and may have spare ones (hidden below), so the panels run longer.
    for ax, (row, trials_of_row) in zip(axes.flat, groups, strict=False):
        ax.set_title(f"{math_text(spec.row_name(int(row)))} (n={len(trials_of_row)})", fontsize=8)
        if truth:
            for column, name in SELECTION_CURVES.items():
                series = [np.asarray(v, dtype=float) for v in trials_of_row[column]]
                length = min(len(s) for s in series)
                mean = np.mean([s[:length] for s in series], axis=0)
                ax.plot(np.arange(1, length + 1), mean, marker=".", label=name)
            ax.axhline(float(trials_of_row["aux_base_rate"].mean()), color="grey", linestyle="--", label="aux base rate")
            selection_epochs = int(trials_of_row["train.selection_epochs"].iloc[0])
            ax.axvline(selection_epochs + 0.5, color="grey", linewidth=0.5)
            ax.set_xlabel("epoch (line: end of selection)", fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            kept = [float(trials_of_row[f"kept.{c}"].mean()) if f"kept.{c}" in trials_of_row else np.nan for c in CLASSES]
            ax.bar(range(len(CLASSES)), kept)
            ax.set_xticks(range(len(CLASSES)), [c[:4] for c in CLASSES], fontsize=7)
            ax.set_xlabel("given label", fontsize=8)
        ax.set_ylim(0, 1.02)
    for ax in axes[:, 0]:
        ax.set_ylabel("share (0-1)" if truth else "share of the class kept", fontsize=8)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    if truth:
        axes.flat[0].legend(fontsize=7, loc="lower left")
        fig.suptitle(f"{math_text(spec.title)}: SSM's aux selection per epoch (mean over seeds; precision and "
                     "recall against the target's standard)", fontsize=9)
    else:
        fig.suptitle(f"{math_text(spec.title)}: share of each aux class SSM kept (mean over seeds)", fontsize=10)
    return fig


def selection_gallery(selection_csv: Path, root: Path, *, dataset: str = "affectnet", per_group: int = 10,
                      size: int = 64, seed: int = 0, truth: dict[str, int] | None = None, trial: str = "") -> Figure:
    """The paper's Figure 6: aux faces SSM kept as clean (top) and rejected as noisy (bottom).

    Each face is titled with its given label and, when `truth` (path -> class index, the synthetic
    benchmark's ground truth) is given, its label under the target's standard, in red where the
    two disagree. `selection_csv` is a run's selection.csv (path, source, label, clean); `trial`
    names the run in the title.
    """
    from sspa_ray.data import read_listing
    from sspa_ray.data._decode import decode_face

    with open(selection_csv, newline="") as handle:
        rows = cast("list[SelectionRow]", list(csv.DictReader(handle)))
    aux = [row for row in rows if row["source"] == Source.AUX]
    listing = read_listing(dataset, "train", root)
    where = {path: i for i, path in enumerate(listing.paths)}
    rng = np.random.default_rng(seed)
    groups = [("kept as clean", [r for r in aux if r["clean"] == "1"]),
              ("rejected as noisy", [r for r in aux if r["clean"] != "1"])]
    fig = Figure(figsize=(per_group * 1.25, 2 * 1.75 + 0.3))
    axes = fig.subplots(2, per_group, squeeze=False)
    for (title, rows), line in zip(groups, axes, strict=True):
        picked = [rows[i] for i in np.sort(rng.permutation(len(rows))[:per_group])]
        for ax in line:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        for ax, row in zip(line, picked, strict=False):  # a group may hold fewer faces than per_group panels
            i = where[row["path"]]
            ax.imshow(decode_face(listing.base / listing.paths[i], listing.box(i), size))
            text, colour = f"given: {row['label']}", "black"
            if truth is not None and row["path"] in truth:
                true = CLASSES[truth[row["path"]]]
                text += f"\ntrue: {true}"
                colour = "black" if true == row["label"] else "red"
            ax.set_title(text, fontsize=7, color=colour)
        line[0].set_ylabel(f"{title}\n({len(rows)})", fontsize=9)
    heading = "Aux samples after the selection stage" + (f", trial {trial}" if trial else "")
    if truth is not None:
        heading += "\n(red: the given label disagrees with the target's standard)"
    fig.suptitle(heading, fontsize=9)
    return fig


def trial_gallery(spec: AblationSpec, results: pd.DataFrame, exp_dir: Path, experiment: dict[str, Any], *,
                  footer: str) -> dict[str, Path]:
    """The paper's Figure 6 from one trial's selection.csv, when its folder is local."""
    from sspa_ray.data import data_root, synthetic

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
    trial = f"{last['trial_dir']} ({math_text(spec.row_name(int(last['row'])))}, seed {int(last['train.seed'])})"
    fig = selection_gallery(selection_csv, root, dataset=str(last["data.aux"]), truth=truth, seed=int(last["train.seed"]),
                            trial=trial)
    return {"selection_gallery": save_figure(fig, Path(exp_dir) / SELECTION_GALLERY, footer, formats=("png",), dpi=100)}


def selection_figures(spec: AblationSpec, results: pd.DataFrame, exp_dir: Path,
                      experiment: dict[str, Any], *, footer: str) -> dict[str, Path]:
    """Both figures; an experiment without SSM rows or with remote storage gets fewer."""
    return {**plot_selection(spec, results, exp_dir, footer=footer),
            **trial_gallery(spec, results, exp_dir, experiment, footer=footer)}
