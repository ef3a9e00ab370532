"""Watching a running experiment: a live per-trial table and per-trial Ray metrics.

On a terminal the table is redrawn in place. Without one (a log file, a Ray Job's log, CI) the log
must grow with the trials, not with trials x reprints (a 40-trial sweep once wrote 1,730 lines): it
gets one line per trial event (started, finished, retried) and the whole table every
``TABLE_INTERVAL_S`` and at the end. The gauges are set by each trial; Ray exports them to Prometheus
with its ``ray_`` prefix as ``ray_sspa_trial_stage``, ``ray_sspa_trial_clean_share``,
``ray_sspa_trial_accuracy``, ``ray_sspa_trial_img_per_s`` and ``ray_sspa_trial_epoch``, labelled
with ``experiment`` and ``trial`` (the trial's name). ``sspa_ray_grafana_dashboard.json`` has one
panel per gauge.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from typing import Any, TextIO

from ray.tune import Callback
from ray.util.metrics import Gauge

from sspa_ray.config import value_text
from sspa_ray.orchestration.plan import ExperimentPlan
from sspa_ray.orchestration.results import trial_status
from sspa_ray.orchestration.stop import stopping
from sspa_ray.outputs import FINISHED, EpochRecord, Stage, Status

# Shown live only: a pending trial that Tune is running (results.parquet has no such status).
RUNNING = "running"
GAUGE_PREFIX = "sspa_trial_"
GAUGE_TAGS = ("experiment", "trial")
# Ray gauges of an EpochRecord's keys, by key.
GAUGES = {
    "epoch": "finished epochs",
    "stage": "training stage: 0 = sample selection (SS), 1 = paired augmentation (PA), 2 = one-stage method (JT), "
             "3 = SCN relabelling (RL)",
    "clean_share": "share of the auxiliary set currently selected as clean",
    "accuracy": "test accuracy after the last epoch",
    "img_per_s": "training throughput, images per second",
}
_STAGES = {stage: i for i, stage in enumerate(Stage)}
# A report key holding a line for the terminal.
NOTICE = "notice"
# Seconds between whole tables in a log (not a terminal); one line per trial event in between.
TABLE_INTERVAL_S = 300.0


@functools.cache
def _gauge(name: str) -> Gauge:
    return Gauge(GAUGE_PREFIX + name, description=GAUGES[name], tag_keys=GAUGE_TAGS)


class TrialGauges:
    """Per-trial Ray metrics, set from each epoch's report."""

    def __init__(self, experiment: str, trial_name: str):
        self.tags = dict(zip(GAUGE_TAGS, (experiment, trial_name), strict=True))

    def update(self, metrics: EpochRecord) -> None:
        values = dict(metrics, stage=_STAGES.get(metrics.get("stage")))
        for name in GAUGES:
            value = values.get(name)
            if isinstance(value, (int, float)) and math.isfinite(value):
                _gauge(name).set(float(value), tags=self.tags)


class ProgressTable(Callback):
    """Prints trial | varied keys | epoch/total | stage | clean share | macro_f1 | status, the trials
    named as their folders are (``modules-ssm+fix+pam-s0``).

    On a terminal the table is redrawn in place every ``refresh_s`` seconds. Elsewhere each change
    of a trial's status is one line, and the whole table is printed every ``interval_s`` seconds
    and when the experiment ends.
    """

    def __init__(self, plan: ExperimentPlan, interval_s: float = TABLE_INTERVAL_S, refresh_s: float = 1.0,
                 stream: TextIO | None = None):
        self.plan = plan
        self.interval_s = interval_s
        self.refresh_s = refresh_s
        self.stream = stream
        self._keys = plan.varied_keys()
        self._epochs: dict[str, int] = {}
        self._names: dict[str, str] = {}
        self._shown: dict[str, str] = {}   # trial id -> the status its last event line gave
        self._last_print = 0.0
        self._last_text = ""
        self._drawn_lines = 0

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles callbacks with the experiment state; the stream and the clock are the
        # driver's own, so a resumed experiment prints its table afresh.
        return {**self.__dict__, "stream": None, "_drawn_lines": 0, "_last_print": 0.0}

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        now = time.monotonic()
        if self._out().isatty():
            if now - self._last_print >= self.refresh_s:
                self._show(trials, redraw=True)
            return
        self._log_events(trials)
        if not self._last_print:
            self._last_print = now  # the first whole table after interval_s: at the start it is all pending
        if now - self._last_print >= self.interval_s:
            self._show(trials, redraw=False)

    def on_experiment_end(self, trials: list, **info) -> None:
        if stopping():
            # Tune has just stopped the unfinished trials, which would read as finished here; they
            # are pending in the saved state, and the command's last line says so.
            return
        if not self._out().isatty():
            self._log_events(trials)
        # A fresh block: Tune logs its final sync between the last step and this call.
        self._show(trials, redraw=False, final=True)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        if result.get(NOTICE):  # e.g. a corrupt checkpoint skipped on restore
            self._write(f"trial {self._name(trial)}: {result[NOTICE]}")
            self._drawn_lines = 0  # the table is redrawn below the notice, not over it

    # ---- rendering --------------------------------------------------------------------------
    def _out(self) -> TextIO:
        return self.stream or sys.stdout

    def _write(self, text: str) -> None:
        out = self._out()
        out.write(text + "\n")
        out.flush()

    def _log_events(self, trials: list) -> None:
        """One line per trial whose status changed since its last line (waiting to start is none)."""
        statuses = {t.trial_id: self._status(t) for t in trials}
        changed = [t for t in trials if statuses[t.trial_id] != self._shown.get(t.trial_id, Status.PENDING)]
        if not changed:
            return
        done = sum(s in FINISHED for s in statuses.values())
        total = max(len(trials), self.plan.total_trials())
        for trial in changed:
            status = self._shown[trial.trial_id] = statuses[trial.trial_id]
            line = f"[{done}/{total} finished] {self._name(trial)}: {status}"
            result = trial.last_result or {}
            if status in FINISHED and result.get("epoch") is not None:
                value = _metric_text(result.get(self.plan.metric))
                line += f" after epoch {result['epoch']}/{self._planned_epochs(trial)}, {self.plan.metric} {value}"
            self._write(line)

    def _name(self, trial) -> str:
        if trial.trial_id not in self._names:
            self._names[trial.trial_id] = self.plan.tune_trial_name(trial.config, trial.trial_id)
        return self._names[trial.trial_id]

    def _planned_epochs(self, trial) -> int:
        if trial.trial_id not in self._epochs:
            cfg, _ = self.plan.trial_config(trial.config)
            self._epochs[trial.trial_id] = cfg.train.epochs
        return self._epochs[trial.trial_id]

    def _status(self, trial) -> str:
        status: str = trial_status(trial.status, trial.last_result or {}, self._planned_epochs(trial))
        if status == Status.PENDING and trial.status == "RUNNING":
            status = RUNNING
        if trial.num_failures and status in (RUNNING, Status.PENDING):
            status += f" (retry {trial.num_failures})"
        return status

    def _show(self, trials: list, *, redraw: bool, final: bool = False) -> None:
        self._last_print = time.monotonic()
        text = self._render(trials)
        if final and text == self._last_text:
            return
        self._last_text = text
        out = self._out()
        if redraw and self._drawn_lines:
            out.write(f"\x1b[{self._drawn_lines}F\x1b[J")  # back to the table's first line, clear below
        out.write(text + "\n")
        out.flush()
        self._drawn_lines = text.count("\n") + 1

    def _render(self, trials: list) -> str:
        header = ["trial", *self._keys, "epoch", "stage", "clean", "macro_f1", "status"]
        rows = [header]
        statuses = []
        for trial in sorted(trials, key=lambda t: t.trial_id):
            result = trial.last_result or {}
            values = self._varied_values(trial)
            epoch = result.get("epoch")
            statuses.append(self._status(trial))
            rows.append([
                self._name(trial),
                *(value_text(values.get(k)) for k in self._keys),
                f"{epoch if epoch is not None else '-'}/{self._planned_epochs(trial)}",
                str(result.get("stage", "-")),
                _metric_text(result.get("clean_share")),
                _metric_text(result.get("macro_f1")),
                statuses[-1],
            ])
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        done = sum(s in FINISHED for s in statuses)
        total = max(len(trials), self.plan.total_trials())
        lines = [f"== {self.plan.name}: {done}/{total} trials finished =="]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        return "\n".join(lines)

    def _varied_values(self, trial) -> dict[str, Any]:
        layers, _ = self.plan.trial_layers(trial.config)
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update(layer)
        return merged


def _metric_text(value: Any) -> str:
    """A reported metric, 4 significant digits; '-' before the first report."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)
