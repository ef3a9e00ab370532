"""One Tune trial: the SSPA-JT engine run for one configuration.

Two paths run the same ``sspa_ray.engine.fit`` with the same checkpoint format:

- ``--workers-per-trial 0`` (default): the engine runs inside the trial process and reports each
  epoch through ``ray.tune.report``. No Train worker actor is started, which saves ~19 s a trial.
- ``--workers-per-trial N``: the trial fits a ``TorchTrainer`` of N DDP workers; their reports reach
  Tune through ``TuneReportCallback``.

Every epoch's checkpoint is reported as a directory holding the engine's ``epoch_NNNN/`` folder, so
restoring is copying the trial's stored checkpoints back into ``run_dir/checkpoints`` and calling
``fit(resume=True)``; the resumed run is the run that would have happened without the fault. The
trial's ``train.log`` is published with every epoch and continued on restore.

A write that storage refuses (full, read-only) raises :class:`StorageFull`: the driver then stops the
experiment resumably instead of retrying trials against a full disk. Restoring, publishing and that
check live in _trial_files.py; this file runs the trial on its two paths.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray.train
import ray.tune

from sspa_ray.config import from_flat
from sspa_ray.engine import TrainingDiverged
from sspa_ray.orchestration._trial_files import Staged, keep_log, publish, restore, storage_errors
from sspa_ray.orchestration.plan import ExperimentPlan
from sspa_ray.orchestration.progress import NOTICE, TrialGauges
from sspa_ray.orchestration.storage import storage_filesystem, storage_join
from sspa_ray.outputs import DIVERGED_KEY, LOG_FILE, METRICS

# Reported checkpoints kept per trial: restoring needs the newest, the one before covers a newest
# one that was cut off mid-upload.
CHECKPOINTS_KEPT = 2
# What a trial that drives a TorchTrainer asks for itself; its workers get the rest of
# --cpus-per-trial, so that N trials of C CPUs fit on N * C CPUs.
DRIVER_CPU = 0.01
# Seconds a TorchTrainer waits for its workers to start (Ray's default, 60 s, is shorter than a
# worker's start-up on a loaded machine, and on time-out Train kills them and starts over).
WORKER_START_TIMEOUT_S = "1800"


def run_trial(tune_config: dict[str, Any], plan: ExperimentPlan) -> None:
    """The Tune function trainable: build this trial's config and run it on one of the two paths."""
    os.environ.update(plan.env)
    cfg, _ = plan.trial_config(tune_config)
    context = ray.tune.get_context()
    trial_dir_name = Path(context.get_trial_dir()).name
    outputs_uri = storage_join(plan.experiment_path, trial_dir_name)
    trial = TrialInfo(context.get_trial_id(), context.get_trial_name(), plan.name)
    if plan.resources.workers_per_trial == 0:
        _run_in_process(cfg.to_flat(), Path.cwd() / "run", outputs_uri, trial)
    else:
        _run_with_torch_trainer(cfg.to_flat(), plan, trial, outputs_uri)


@dataclass(frozen=True)
class TrialInfo:
    id: str
    name: str          # Tune's trial name: the readable one of ExperimentPlan.trial_name
    experiment: str


# ---- single-device path ---------------------------------------------------------------------------

def _run_in_process(flat: dict[str, Any], run_dir: Path, outputs_uri: str, trial: TrialInfo) -> None:
    cfg = from_flat(flat).validate()
    restored, notice, backlog = restore(ray.tune.get_checkpoint(), run_dir, outputs_uri)
    gauges = TrialGauges(trial.experiment, trial.name)

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        nonlocal notice
        gauges.update(metrics)
        metrics = {**metrics, NOTICE: notice} if notice else dict(metrics)
        notice = None
        if checkpoint_dir is None:
            ray.tune.report(metrics)
            return
        with storage_errors(outputs_uri, checkpoint_dir):
            with Staged(checkpoint_dir) as staged:
                ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(staged))
            publish(run_dir, outputs_uri, (LOG_FILE,))

    # Epochs checkpointed after the last one Tune recorded (a kill came between): tell Tune now
    # instead of training them again.
    for record, checkpoint_dir in backlog:
        report(record, checkpoint_dir)

    # Published also when the trial raises or the scheduler stops it (Tune ends the function at
    # its next report), so every trial folder has its log.
    try:
        with _log_file(run_dir, capture_output=True, prefix=trial.name) as log:
            log(_where(trial.id, restored))
            _fit(cfg, run_dir, report, restored, log, final_report=ray.tune.report)
    except BaseException:
        with contextlib.suppress(OSError):  # the error in flight matters more than a last copy
            publish(run_dir, outputs_uri)
        raise
    with storage_errors(outputs_uri):
        publish(run_dir, outputs_uri)


# ---- TorchTrainer path ------------------------------------------------------------------------------

def _run_with_torch_trainer(flat: dict[str, Any], plan: ExperimentPlan, trial: TrialInfo, outputs_uri: str) -> None:
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    res = plan.resources
    workers = res.workers_per_trial
    gpus = res.gpus_per_trial / workers
    # Ray counts resources in units of 1e-4; round down so that driver + workers <= --cpus-per-trial.
    cpus = max(math.floor((res.cpus_per_trial - DRIVER_CPU) / workers * 1e4) / 1e4, DRIVER_CPU)
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", WORKER_START_TIMEOUT_S)
    filesystem, train_storage = storage_filesystem(storage_join(plan.experiment_path, "_train"))
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"config": flat, "env": plan.env, "outputs_uri": outputs_uri, "trial": trial},
        scaling_config=ray.train.ScalingConfig(
            num_workers=workers,
            use_gpu=gpus > 0,
            resources_per_worker={"CPU": cpus, **({"GPU": gpus} if gpus else {})},
        ),
        # A stable name under the experiment: a retried or resumed trial finds its Train run's
        # checkpoints there. Retries are Tune's job (FailureConfig of the Tuner), not Train's.
        run_config=ray.train.RunConfig(
            name=f"train-{trial.id}",
            storage_path=train_storage,
            storage_filesystem=filesystem,
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=0),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
        ),
    )
    trainer.fit()


def _train_worker(loop_config: dict[str, Any]) -> None:
    """Runs on every DDP rank. All ranks call ray.train.report once per epoch (Train V2 requires it);
    only rank 0 passes the checkpoint and writes the run's files."""
    os.environ.update(loop_config["env"])
    context = ray.train.get_context()
    rank = context.get_world_rank()
    trial = loop_config["trial"]
    run_dir = Path(tempfile.gettempdir()) / "sspa-ray-train" / trial.id / f"rank{rank}"
    cfg = from_flat(loop_config["config"]).validate()
    # Every rank restores the same folders: the reported checkpoint and its siblings, nothing rank-specific.
    restored, notice, _ = restore(ray.train.get_checkpoint(), run_dir, None)
    gauges = None
    if rank == 0:
        gauges = TrialGauges(trial.experiment, trial.name)
        keep_log(loop_config["outputs_uri"], run_dir)

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        nonlocal notice
        if gauges is not None:
            gauges.update(metrics)
            if notice:  # Tune takes rank 0's metrics: the terminal says why an epoch runs again
                metrics, notice = {**metrics, NOTICE: notice}, None
        if checkpoint_dir is None:
            ray.train.report(dict(metrics))
            return
        # Published before each report: a trial the scheduler stops at this report is ended with
        # its Train workers, possibly before the `finally` below runs.
        publish(run_dir, loop_config["outputs_uri"])
        with Staged(checkpoint_dir) as staged:
            ray.train.report(dict(metrics), checkpoint=ray.train.Checkpoint.from_directory(staged),
                             checkpoint_dir_name=checkpoint_dir.name)

    try:
        with _log_file(run_dir, capture_output=False, prefix=trial.name if rank == 0 else None) as log:
            log(_where(f"{trial.id} rank {rank}", restored))
            _fit(cfg, run_dir, report, restored, log, final_report=ray.train.report)
    finally:
        if rank == 0:
            publish(run_dir, loop_config["outputs_uri"])


# ---- shared helpers ---------------------------------------------------------------------------------

def _fit(cfg, run_dir: Path, report, restored: bool, log, *, final_report) -> None:
    """Run the engine; a diverged run ends with one last report that marks it (no retry)."""
    # Imported here: the engine loads torch, which the driver (it imports this file to name the
    # trainable to Ray) never needs; only the trial process does.
    from sspa_ray.engine import fit

    try:
        fit(cfg, run_dir, report=report, resume=restored, log=log)
    except TrainingDiverged as exc:
        log(f"diverged: {exc}")
        final_report(_diverged_metrics(exc))


class _log_file:
    """The engine's log lines go to run_dir/train.log instead of the driver's terminal.

    With `capture_output` anything else the trial prints (data decoding progress, warnings) goes
    there too. Train workers leave their output alone: Ray Train sends it to its own worker logs.
    With a `prefix` (the trial's name) the engine's lines, one per epoch, also go to the actor's
    own stdout, which is the log the Ray dashboard shows for the actor.
    """

    def __init__(self, run_dir: Path, capture_output: bool, prefix: str | None = None):
        self.path = run_dir / LOG_FILE
        self.capture_output = capture_output
        self.prefix = prefix

    def __enter__(self) -> Callable[[str], None]:
        self.file = open(self.path, "a", encoding="utf-8", buffering=1)
        console = sys.stdout
        self.redirects = contextlib.ExitStack()
        if self.capture_output:
            self.redirects.enter_context(contextlib.redirect_stdout(self.file))
            self.redirects.enter_context(contextlib.redirect_stderr(self.file))

        def log(line: str) -> None:
            self.file.write(line + "\n")
            if self.prefix is not None:
                print(f"[{self.prefix}] {line}", file=console, flush=True)

        return log

    def __exit__(self, *exc) -> None:
        self.redirects.close()
        self.file.close()


def _where(who: str, restored: bool) -> str:
    node = ray.get_runtime_context().get_node_id()
    return f"trial {who} on node {node}" + (" (restored from its last reported checkpoint)" if restored else "")


def _diverged_metrics(exc: TrainingDiverged) -> dict[str, Any]:
    # NaN metrics: Optuna records the trial as failed and ASHA ignores it, instead of ranking it.
    return {DIVERGED_KEY: 1, "epoch": int(exc.epoch), "loss": float(exc.loss), **{m: math.nan for m in METRICS}}
