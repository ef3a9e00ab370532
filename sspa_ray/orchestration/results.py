"""From Tune's experiment state to ``results.parquet``: one row per trial (ARCHITECTURE.md).

Columns: every dotted config key, ``trial_id``, ``status``, ``error``, ``epochs_done``, the final
``accuracy``/``macro_precision``/``macro_recall``/``macro_f1``, the same at the best epoch as
``best.*`` plus ``best.epoch`` (chosen on the test set, as the engine's metrics.json does),
``clean_share``, ``selection_precision``, ``selection_recall``, ``aux_base_rate``, ``row`` (-1 for
tune and for ``--preset paper``), ``feeds`` (``--preset paper``: the table rows the trial fills,
such as ``table_5:8 table_8:3``; empty otherwise), for completed trials the final per-class
recall as ``recall.<class>`` and aux share kept per class as ``kept.<class>``, the per-epoch
selection as lists ``history.clean_share``, ``history.selection_precision``,
``history.selection_recall``, for completed trials the images they trained and tested on
(``size.target``, ``size.aux``, ``size.test``), and ``trial_dir`` (the trial's folder under the experiment path,
holding its selection.csv).

Status: ``completed`` (all epochs ran), ``stopped`` (the ASHA scheduler ended it early),
``diverged`` (NaN/inf loss), ``errored`` (raised after its retries) or ``pending`` (not finished).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pandas as pd

from sspa_ray.config import KEYS
from sspa_ray.labels import CLASSES
from sspa_ray.orchestration.plan import ExperimentPlan
from sspa_ray.orchestration.storage import storage_filesystem, storage_join
from sspa_ray.outputs import (
    BEST_BY,
    DCJT_FIGURES,
    DIVERGED_KEY,
    EPOCH_KEYS,
    METRICS,
    METRICS_FILE,
    RELABEL_FIGURES,
    RESULTS_FILE,
    SELECTION_FIGURES,
    SELECTION_FILE,
    SIZE_COLUMNS,
    SelectionRow,
    Source,
    Status,
)

EXTRA = (*SELECTION_FIGURES, *RELABEL_FIGURES, *DCJT_FIGURES)
# The figures kept per epoch as one list per trial, the history.* columns: SSM's selection and SCN's
# relabelling, for their plots.
HISTORY_SERIES = ("clean_share", "selection_precision", "selection_recall", *RELABEL_FIGURES)
RESULT_COLUMNS = (*KEYS, "trial_id", "status", "error", "epochs_done", *METRICS,
           *(f"best.{m}" for m in METRICS), "best.epoch", *EXTRA, "row", "feeds", *(f"recall.{c}" for c in CLASSES),
           *(f"kept.{c}" for c in CLASSES), *(f"history.{s}" for s in HISTORY_SERIES), *SIZE_COLUMNS, "trial_dir")


def trial_status(tune_status: str, last_result: Mapping[str, Any], planned_epochs: int) -> Status:
    """A trial's status in results.parquet from Tune's status and its last report."""
    if tune_status == "ERROR":
        return Status.ERRORED
    if last_result.get(DIVERGED_KEY):
        return Status.DIVERGED
    if tune_status != "TERMINATED":
        return Status.PENDING
    return Status.COMPLETED if (last_result.get("epoch") or 0) >= planned_epochs else Status.STOPPED


def trial_row(plan: ExperimentPlan, trial, history: pd.DataFrame | None) -> dict[str, Any]:
    """One results.parquet row from a Tune trial and its reported history."""
    cfg, row = plan.trial_config(trial.config)
    last = dict(trial.last_result or {})
    status = trial_status(trial.status, last, cfg.train.epochs)
    metrics: dict[str, Any] = {}
    if status == Status.COMPLETED:
        try:
            metrics = json.loads(_trial_file(plan, trial, METRICS_FILE) or "{}")
        except json.JSONDecodeError:
            metrics = {}
    # A completed trial's own history (metrics.json) is whole. Tune's can lack the report of the epoch a
    # trial crashed after (seen under load: epoch 2 reported, checkpointed and resumed from, but absent
    # from result.json), which would move the best epoch and leave a hole in the history.* lists.
    epochs = _epoch_history(pd.DataFrame(metrics["history"]) if metrics.get("history") else history)
    record: dict[str, Any] = {**cfg.to_flat(), "trial_id": trial.trial_id, "status": status.value, "row": row,
                              "feeds": plan.trial_feeds(trial.config)}
    record["epochs_done"] = int(epochs["epoch"].max()) if len(epochs) else 0
    final = epochs.iloc[-1].to_dict() if len(epochs) else {}
    if status == Status.DIVERGED:
        final = {}
        record["error"] = f"diverged in epoch {last.get('epoch')}: loss {last.get('loss')}"
    elif status == Status.ERRORED:
        record["error"] = _error_text(trial)
    else:
        record["error"] = ""
    for name in (*METRICS, *EXTRA):
        record[name] = _number(final.get(name))
    if status == Status.COMPLETED:
        record.update(per_class(metrics))
        record.update(data_sizes(metrics, _trial_file(plan, trial, SELECTION_FILE)))
    record["trial_dir"] = Path(trial.path).name
    for name in HISTORY_SERIES:
        column = epochs[name] if name in epochs else pd.Series(dtype=float)
        record[f"history.{name}"] = [_number(v) for v in column]
    if len(epochs) and BEST_BY in epochs and epochs[BEST_BY].notna().any():
        best = epochs.loc[epochs[BEST_BY].idxmax()].to_dict()
        record.update({f"best.{m}": _number(best.get(m)) for m in METRICS})
        record["best.epoch"] = int(best["epoch"])
    else:
        record.update({f"best.{m}": math.nan for m in METRICS})
        record["best.epoch"] = -1
    return record


def collect(plan: ExperimentPlan) -> pd.DataFrame:
    """Read the experiment's trials from storage (also mid-way or after a kill) into the table."""
    from ray.tune import ExperimentAnalysis

    filesystem, path = storage_filesystem(plan.experiment_path)
    analysis = ExperimentAnalysis(path, storage_filesystem=filesystem)
    histories = analysis.trial_dataframes
    rows = [trial_row(plan, t, histories.get(t.trial_id)) for t in analysis.trials]
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    # Trial ids end in their creation index, so this is the order of the grid / the ablation rows.
    return frame.sort_values(["row", "trial_id"], kind="stable").reset_index(drop=True)


def write_results(plan: ExperimentPlan) -> pd.DataFrame:
    """Write results.parquet and the tables into the experiment directory."""
    # Imported here, on the driver: trial processes import this module (progress.py) and must not
    # load matplotlib.
    from sspa_ray.report import render_experiment

    frame = collect(plan)
    frame.to_parquet(plan.out / RESULTS_FILE, index=False)
    render_experiment(plan.out, ("md", "csv", "tex"), "final")
    return frame


def _epoch_history(history: pd.DataFrame | None) -> pd.DataFrame:
    """The per-epoch reports, one per epoch: a resumed trial may report an epoch twice (keep the last)."""
    if history is None or not len(history) or "epoch" not in history:
        return pd.DataFrame(columns=list(EPOCH_KEYS))
    epochs = history[history["epoch"].notna()]
    if DIVERGED_KEY in epochs:
        epochs = epochs[epochs[DIVERGED_KEY].isna() | (epochs[DIVERGED_KEY] == 0)]
    epochs = epochs.drop_duplicates("epoch", keep="last").sort_values("epoch")
    return epochs.reset_index(drop=True)


def _trial_file(plan: ExperimentPlan, trial, name: str) -> str | None:
    """A file the trial published into its folder (metrics.json, selection.csv), or None."""
    filesystem, root = storage_filesystem(storage_join(plan.experiment_path, Path(trial.path).name, name))
    try:
        with filesystem.open_input_stream(root) as stream:
            return stream.read().decode("utf-8")
    except (FileNotFoundError, OSError, UnicodeDecodeError):
        return None


def per_class(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``recall.<class>`` and the aux share SSM kept per class, ``kept.<class>``, of the final epoch,
    from the trial's metrics.json."""
    classes = metrics.get("per_class", {})
    kept = (metrics.get("selection") or {}).get("kept_per_class", {})
    out = {f"recall.{name}": float(classes[name]["recall"]) for name in CLASSES if name in classes}
    out.update({f"kept.{name}": float(kept[name]) for name in CLASSES if name in kept})
    return out


def data_sizes(metrics: Mapping[str, Any], selection_csv: str | None) -> dict[str, float]:
    """The trial's images: target and aux train (selection.csv has a row per training sample, by
    source) and test (metrics.json's per-class support); a file that is missing leaves NaN."""
    target_column, aux_column, test_column = SIZE_COLUMNS
    support = [c.get("support") for c in metrics.get("per_class", {}).values()]
    out = {column: math.nan for column in SIZE_COLUMNS}
    if support and all(isinstance(s, int) for s in support):
        out[test_column] = float(sum(support))
    if selection_csv is not None:
        rows = cast("list[SelectionRow]", list(csv.DictReader(io.StringIO(selection_csv))))
        sources = [row["source"] for row in rows]
        out[target_column] = float(sources.count(Source.TARGET))
        out[aux_column] = float(sources.count(Source.AUX))
    return out


def _number(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value


def _error_text(trial) -> str:
    error = trial.get_error()
    text = str(error) if error is not None else Status.ERRORED.value
    lines = [line for line in text.strip().splitlines() if line.strip()]
    # Tune wraps the trial's traceback; its last line names the exception that was raised.
    return lines[-1][:500] if lines else Status.ERRORED.value
