"""The provenance line: what produced a table, a claims file, a plot or report.html, defined once.

Every output of `sspa-ray report` names the data it came from (the target and the aux set with
their sizes), the ``--set`` overrides, the seeds, the schedule, and the code and date of the run:

    target synthetic (1000 train, 600 test images); aux affectnet (2299 train images, data.aux_ratio 0.1);
    --set train.epochs=2; seed 0; 2 epochs (1 of selection); sspa-ray 0.1.0, git 1a2b3c4d; run 2026-12-05

Markdown and HTML carry it as a line, LaTeX as a comment, plots as a footer; CSV has no room for
one, so provenance.json beside it holds the same record.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sspa_ray.outputs import PROVENANCE_FILE, SIZE_COLUMNS, Status

TARGET_SIZE, AUX_SIZE, TEST_SIZE = SIZE_COLUMNS


@dataclass(frozen=True)
class Provenance:
    data: str          # "target synthetic (1000 train, 600 test images); aux affectnet (...)"
    overrides: str     # "--set train.epochs=2" or "no --set"
    seeds: str         # "seed 0", "seeds 0, 1, 2"
    schedule: str      # "12 epochs (6 of selection)"
    code: str          # "sspa-ray 0.1.0, git 1a2b3c4d"
    date: str          # "run 2026-12-05" (the run's start; its last resume when on another day)

    def line(self) -> str:
        return "; ".join((self.data, self.overrides, self.seeds, self.schedule, self.code, self.date))

    def markdown(self) -> str:
        return f"Provenance: {self.line()}."

    def write(self, folder: Path) -> Path:
        """provenance.json in `folder`: the record beside the CSV files, which cannot hold a comment."""
        path = Path(folder) / PROVENANCE_FILE
        path.write_text(json.dumps({**asdict(self), "line": self.line()}, indent=1) + "\n", encoding="utf-8")
        return path


def provenance(results: pd.DataFrame, experiment: Mapping[str, Any]) -> Provenance:
    """The provenance of outputs rendered from `results` (the trials they show) of `experiment`."""
    done = results[results["status"] == Status.COMPLETED] if "status" in results else results.iloc[0:0]
    target = experiment.get("target") or _only(results, "data.target") or "synthetic"
    return Provenance(
        data=f"{_target_text(target, done)}; {_aux_text(results, done)}",
        overrides=_overrides_text(experiment),
        seeds=_seeds_text(results, experiment),
        schedule=_schedule_text(results),
        **_code_and_date(experiment.get("runs") or []),
    )


def _only(results: pd.DataFrame, column: str) -> Any:
    values = _distinct(results, column)
    return values[0] if len(values) == 1 else None


def _distinct(frame: pd.DataFrame, column: str) -> list:
    if column not in frame:
        return []
    values = {v.item() if hasattr(v, "item") else v for v in frame[column] if v is not None and v == v}
    return sorted(values, key=lambda v: (str(type(v)), v))


def _range_text(frame: pd.DataFrame, column: str) -> str | None:
    """'2000' or '400-2000' over the trials of `frame`; None when no trial recorded it."""
    values = [int(v) for v in _distinct(frame, column) if isinstance(v, (int, float)) and math.isfinite(v)]
    if not values:
        return None
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}-{max(values)}"


def _target_text(target: str, done: pd.DataFrame) -> str:
    train, test = _range_text(done, TARGET_SIZE), _range_text(done, TEST_SIZE)
    if train is None and test is None:
        return f"target {target} (sizes not recorded)"
    return f"target {target} ({train or '?'} train, {test or '?'} test images)"


def _aux_text(results: pd.DataFrame, done: pd.DataFrame) -> str:
    with_aux = results
    if {"data.aux", "data.aux_ratio"} <= set(results.columns):
        with_aux = results[(results["data.aux"] != "none") & (results["data.aux_ratio"] > 0)]
    names = _distinct(with_aux, "data.aux")
    if not names:
        return "no aux set"
    ratios = [f"{r:g}" for r in _distinct(results, "data.aux_ratio")]
    share = f"data.aux_ratio {ratios[0]}" if len(ratios) == 1 else f"data.aux_ratio {', '.join(ratios)} by row"
    images = _range_text(done[done.index.isin(with_aux.index)], AUX_SIZE)
    return f"aux {', '.join(map(str, names))} ({images + ' train images, ' if images else ''}{share})"


def _overrides_text(experiment: Mapping[str, Any]) -> str:
    if "overrides" not in experiment:  # no experiment.json: nothing says what was set
        return "--set not recorded"
    return " ".join(f"--set {k}={_exact_text(v)}" for k, v in experiment["overrides"].items()) or "no --set"


def _exact_text(value: Any) -> str:
    """An override as it was given back to --set, to the last digit (config.value_text rounds floats to
    six significant digits for names and cells)."""
    return str(value).lower() if isinstance(value, bool) or value is None else str(value)


def _seeds_text(results: pd.DataFrame, experiment: Mapping[str, Any]) -> str:
    seeds = [int(s) for s in _distinct(results, "train.seed")]
    if not seeds:
        n = int(experiment.get("seeds") or 1)
        return f"{n} seed{'s' if n > 1 else ''} per configuration, none reported yet"
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if len(seeds) > 3 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds))


def _schedule_text(results: pd.DataFrame) -> str:
    pairs = sorted({(int(e), int(s)) for e, s in zip(results.get("train.epochs", ()), results.get("train.selection_epochs", ()), strict=True)})
    if not pairs:
        return "schedule not recorded"
    if len(pairs) == 1:
        epochs, selection = pairs[0]
        return f"{epochs} epochs ({selection} of selection)"
    return "epochs " + ", ".join(f"{e} ({s} of selection)" for e, s in pairs)


def _code_and_date(runs: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """The code and dates of the experiment's runs (experiment.json ``runs``, which every start
    and resume extends); rendered from results.parquet alone, without experiment.json, neither is known."""
    runs = list(runs)
    if not runs:
        return {"code": "code not recorded", "date": "date not recorded"}
    codes = list(dict.fromkeys(str(r.get("code")) for r in runs))
    days = list(dict.fromkeys(str(r.get("date", ""))[:10] for r in runs))
    date = f"run {days[0]}" + (f", resumed {days[-1]}" if len(days) > 1 else "")
    return {"code": " then ".join(codes), "date": date}
