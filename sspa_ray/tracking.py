"""Experiment trackers chosen with ``--logger`` (repeatable): tensorboard, mlflow, wandb, csv.

``tune``/``ablate`` use Ray's logger callbacks (``sspa_ray.orchestration.monitoring``); ``train``
runs without Ray and uses :class:`RunTrackers`, which writes the same metric names. Nothing here
imports Ray. No tracker reaches the network unless the user asks: MLflow writes a local ``file:``
store unless ``MLFLOW_TRACKING_URI`` is set, W&B runs offline unless the user has logged in.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import math
import netrc
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sspa_ray.errors import UserError

LOGGERS = ("tensorboard", "mlflow", "wandb", "csv")
DEFAULT_LOGGERS = ("tensorboard",)
# Loggers whose package is an optional extra of sspa-ray (the extra has the package's name).
OPTIONAL = ("mlflow", "wandb")
# The tag (MLflow) / group (W&B) that puts the seeds of one configuration together.
GROUP_TAG = "sspa.group"
MLFLOW_DIR = "mlruns"
WANDB_PROJECT = "sspa-ray"
# Tune's TensorBoard logger writes results under this prefix; train uses it too, so runs of both
# commands land on the same charts.
TB_PREFIX = "ray/tune/"
PROGRESS_CSV = "progress.csv"   # the name Tune's CSV logger uses


def check_loggers(names: Iterable[str]) -> list[str]:
    """The --logger values, deduplicated; a missing optional extra is a one-line error."""
    chosen = list(dict.fromkeys(names)) or list(DEFAULT_LOGGERS)
    for name in chosen:
        if name in OPTIONAL and importlib.util.find_spec(name) is None:
            raise UserError(f"--logger {name} needs the {name} package: pip install \"sspa-ray[{name}]\"")
    return chosen


def mlflow_uri(default_dir: Path) -> str:
    """MLFLOW_TRACKING_URI when the user set it, else a local file store in `default_dir`.

    MLflow 3 keeps its file store in maintenance mode and refuses it unless MLFLOW_ALLOW_FILE_STORE
    is set; it is the one backend that needs neither a server nor a database package.
    """
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return Path(default_dir).resolve().as_uri()


def wandb_mode() -> str:
    """W&B's mode: the user's WANDB_MODE, else online only when an API key is configured."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        logged_in = netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        logged_in = False
    return "online" if logged_in else "offline"


def numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a report (the stage name and NaNs are not plotted)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def config_group(flat: Mapping[str, Any]) -> str:
    """A stable name for a configuration regardless of its seed."""
    rest = {k: v for k, v in flat.items() if k != "train.seed"}
    return "train-" + hashlib.sha1(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:10]


class RunTrackers:
    """The trackers of one ``sspa-ray train`` run: call :meth:`epoch` per report, :meth:`close` at the end."""

    def __init__(self, names: Iterable[str], flat: Mapping[str, Any], run_dir: Path):
        self.names = list(names)
        self.params = dict(flat)
        self.run_dir = Path(run_dir)
        self.group = config_group(flat)
        self._tb = self._mlflow = self._wandb = None
        if "mlflow" in self.names:
            self._start_mlflow()
        if "wandb" in self.names:
            import wandb

            self._wandb = wandb.init(project=WANDB_PROJECT, group=self.group, name=self.run_dir.name,
                                     config=self.params, dir=str(self.run_dir), mode=wandb_mode())

    def _start_mlflow(self) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=mlflow_uri(self.run_dir.parent / MLFLOW_DIR))
        experiment = client.get_experiment_by_name("train")
        experiment_id = experiment.experiment_id if experiment else client.create_experiment("train")
        run = client.create_run(experiment_id, run_name=self.run_dir.name, tags={GROUP_TAG: self.group})
        client.log_batch(run.info.run_id, params=_mlflow_params(self.params))
        self._mlflow = (client, run.info.run_id)

    def epoch(self, metrics: Mapping[str, Any]) -> None:
        step = int(metrics["epoch"])
        values = numeric(metrics)
        if "tensorboard" in self.names:
            if self._tb is None:  # opened with the first epoch: a run that fails before has no events
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir))
            for key, value in values.items():
                self._tb.add_scalar(TB_PREFIX + key, value, step)
            self._tb.flush()
        if self._mlflow is not None:
            from mlflow.entities import Metric

            client, run_id = self._mlflow
            now = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])
        if self._wandb is not None:
            self._wandb.log(values, step=step)
        if "csv" in self.names:
            path = self.run_dir / PROGRESS_CSV
            new = not path.exists()
            with open(path, "a", newline="", encoding="utf-8") as file:
                writer = csv.DictWriter(file, fieldnames=list(metrics), extrasaction="ignore")
                if new:
                    writer.writeheader()
                writer.writerow(dict(metrics))

    def close(self, final: Mapping[str, Any] | None, failed: bool = False) -> None:
        if self._tb is not None:
            if final is not None:
                from tensorboardX.summary import hparams

                for summary in hparams(hparam_dict=_hparams(self.params), metric_dict=numeric(final)):
                    self._tb.file_writer.add_summary(summary)
            try:
                self._tb.close()
            except OSError:
                if not failed:
                    raise
                # A full disk already failed the run, which reports it; mark the writer closed so
                # its exit hook does not retry the flush and print a traceback.
                self._tb.file_writer.event_writer._closed = True
        if self._mlflow is not None:
            client, run_id = self._mlflow
            client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")
        if self._wandb is not None:
            self._wandb.finish(exit_code=1 if failed else 0)


def _hparams(params: Mapping[str, Any]) -> dict[str, Any]:
    # TensorBoard's hparams take numbers, strings and booleans only.
    return {k: v for k, v in params.items() if isinstance(v, (bool, int, float, str))}


def _mlflow_params(params: Mapping[str, Any]) -> list:
    from mlflow.entities import Param

    return [Param(k, str(v)) for k, v in params.items()]
