"""Build, run and resume the Tune experiment of an :class:`ExperimentPlan`.

- ``search: grid`` becomes ``tune.grid_search`` (repeated ``num_samples`` times); ``random`` and
  ``optuna`` draw ``num_samples`` trials, Optuna through a seeded ``OptunaSearch`` behind a
  ``ConcurrencyLimiter``. ``scheduler: asha`` is ``AsyncHyperBandScheduler`` on the ``epoch`` count.
- An ablation runs its explicit list of trial configs through a ``searchers.ListSearcher``, so Tune's
  config of a trial is its dotted config (``config/modules.ssm`` in Tune's tables, hparams in
  TensorBoard) and its folder has a readable name such as ``modules-ssm+fix+pam-s0``.
- ``--seeds N`` replicates every configuration with ``train.seed`` = base .. base+N-1: a grid over
  the seeds for grid and random search (random keys drawn once per sample, then held for every
  seed), and Ray's ``Repeater`` for Optuna (each suggestion runs N times; Optuna sees the mean).
- The experiment lives at ``storage/name`` (stable, no timestamps), so ``--resume`` restores it with
  ``Tuner.restore(..., resume_errored=True)``: finished trials stay finished, unfinished ones
  continue from their last checkpoint.
- A signal or a full storage ends the run resumably (``stop.StopGuard``) and raises
  ``ExperimentStopped``; nothing is written to ``--out`` then, so ``--resume`` finishes it.
- Local storage goes through ``storage.AtomicLocalFS``: Ray's experiment state is never truncated.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import ray
from ray import tune
from ray.tune.search.repeater import TRIAL_INDEX
from ray.tune.trainable.function_trainable import wrap_function

from sspa_ray.orchestration.cluster import ClusterOptions, connect
from sspa_ray.orchestration.monitoring import install_grafana_dashboard, logger_callbacks
from sspa_ray.orchestration.plan import REPEAT_INDEX, ExperimentPlan
from sspa_ray.orchestration.progress import TABLE_INTERVAL_S, ProgressTable
from sspa_ray.orchestration.results import collect, write_results

# Re-exported: the tuner.pkl of an ablation started before searchers.py existed names it here.
from sspa_ray.orchestration.searchers import ListSearcher  # noqa: F401
from sspa_ray.orchestration.stop import _TUNE_SIGINT_ENV, ExperimentStopped, StopGuard
from sspa_ray.orchestration.storage import storage_filesystem
from sspa_ray.orchestration.trial import CHECKPOINTS_KEPT, DRIVER_CPU, run_trial
from sspa_ray.outputs import HANGUP_LOG_FILE, RESULTS_FILE, TABLE_STEM

assert REPEAT_INDEX == TRIAL_INDEX, "plan.py names Ray's Repeater index without importing Ray"
# Seconds between snapshots of the experiment state; a killed driver loses at most this much.
STATE_SNAPSHOT_S = "5"


def run_experiment(plan: ExperimentPlan, *, resume: bool = False, cluster: ClusterOptions = ClusterOptions(),
                   progress_interval_s: float = TABLE_INTERVAL_S, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run (or resume) the experiment on Ray and write results.parquet and the tables into plan.out."""
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", STATE_SNAPSHOT_S)
    # Frequent snapshots are what we want (see CHECKPOINTS_KEPT); Ray would warn about each one.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # The loggers are chosen with --logger; Tune would add CSV, JSON and TensorBoard on its own.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ[_TUNE_SIGINT_ENV] = "1"
    # Tune's new output engine prints a configuration box, the driver's staging folder and a
    # TensorBoard hint for /tmp/ray even at verbose=0; the legacy one prints nothing at 0. The
    # ProgressTable is the terminal's view, and the trial folders are under --out.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    plan.save()
    # Tune takes a filesystem and a path in it (bucket/key for S3), never a URI together with one.
    filesystem, experiment_fs_path = storage_filesystem(plan.experiment_path)
    with connect(cluster, log=log):
        install_grafana_dashboard(log=log)
        # One actor per trial when someone can watch the dashboard (--dashboard, or a cluster, which
        # has one): the Actors page then lists each trial by name, since Ray fixes an actor's repr when
        # it starts, and each actor's log holds one trial's epochs. Otherwise trial processes are
        # reused: a fresh one cost ~11 s more per trial here (README, Monitoring).
        per_trial = cluster.dashboard or cluster.address is not None
        trainable = named_trainable(plan, per_trial)
        if resume and tune.Tuner.can_restore(experiment_fs_path, storage_filesystem=filesystem):
            log(f"resuming {plan.experiment_path}")
            tuner = tune.Tuner.restore(experiment_fs_path, trainable=trainable, resume_errored=True,
                                       storage_filesystem=filesystem)
        else:
            if resume:
                log(f"no experiment state in {plan.experiment_path} yet: starting from the beginning")
            tuner = build_tuner(plan, trainable, progress_interval_s, reuse_actors=not per_trial)
        with StopGuard(hangup_log=plan.out / HANGUP_LOG_FILE) as guard:
            tuner.fit()
        try:
            guard.check()
        except ExperimentStopped as stopped:
            with contextlib.suppress(Exception):  # stopped before Tune saved any state: no rows
                stopped.frame = collect(plan)  # what the saved state says: where --resume starts
            stopped.trials = plan.total_trials()
            stopped.checkpoints_kept = CHECKPOINTS_KEPT
            stopped.checkpoint_bytes = getattr(stopped.storage, "checkpoint_bytes", 0) or _checkpoint_bytes(plan)
            raise
        frame = write_results(plan)
        plan.mark_finished()
    log(f"{len(frame)} trials: " + ", ".join(f"{n} {s}" for s, n in frame["status"].value_counts().items()))
    log(f"results: {plan.out / RESULTS_FILE}  tables: {plan.out / TABLE_STEM}.md")
    return frame


def build_tuner(plan: ExperimentPlan, trainable, progress_interval_s: float = TABLE_INTERVAL_S,
                reuse_actors: bool = True) -> tune.Tuner:
    filesystem, storage_path = storage_filesystem(plan.storage)
    return tune.Tuner(
        trainable,
        param_space=plan.param_space(),
        tune_config=tune_config(plan, reuse_actors),
        run_config=tune.RunConfig(
            name=plan.name,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            failure_config=tune.FailureConfig(max_failures=plan.resources.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
            callbacks=[ProgressTable(plan, interval_s=progress_interval_s), *logger_callbacks(plan),
                       *([ReleaseOrphanedPlacementGroups()] if plan.resources.workers_per_trial else [])],
            verbose=0,  # the ProgressTable replaces Tune's own status output
        ),
    )


class ReleaseOrphanedPlacementGroups(tune.Callback):
    """Removes this job's placement groups whose creating actor is dead, every few seconds, and at
    the experiment's end every group an actor of this job made.

    Tune ends a trial that ASHA stops by terminating its actor while ``TorchTrainer.fit()`` runs;
    the Train controller it owns dies with it. In Ray 2.60 the placement group that controller
    made for its workers outlives it until the driver's job ends: only the controller's own
    shutdown, or Train's PlacementGroupCleaner, removes it, and the cleaner depends on the State
    API (a full dashboard, and a single Ray instance on the machine). Left alone, the group holds
    CPUs/GPUs that the next trials wait for, forever. A placement group whose creator is dead has
    no user left, so removing it is safe; only this job's are touched.
    """

    def __init__(self, interval_s: float = 2.0):
        self.interval_s = interval_s
        self._last = 0.0

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        self.release(dead_creators_only=True)

    def on_experiment_end(self, trials: list, **info) -> None:
        # The last trials' controllers may still be dying; no trial runs any more, so every group
        # an actor of this job made is a Train run's leftover.
        self.release(dead_creators_only=False)

    @staticmethod
    def release(*, dead_creators_only: bool) -> None:
        from ray._private.state import state
        from ray.core.generated import gcs_pb2
        from ray.util.placement_group import PlacementGroup

        job = ray.get_runtime_context().get_job_id()
        driver = ray.ActorID.nil().binary()  # the creator of Tune's own trial groups: always "dead"
        for blob in state._connect_and_get_accessor().get_placement_group_table():
            group = gcs_pb2.PlacementGroupTableData.FromString(blob)
            orphaned = ((group.creator_actor_dead or not dead_creators_only) and group.creator_actor_id != driver
                        and not group.is_detached and group.creator_job_id.hex() == job)
            if orphaned and group.state != gcs_pb2.PlacementGroupTableData.REMOVED:
                ray.util.remove_placement_group(PlacementGroup(ray.PlacementGroupID(group.placement_group_id)))


def trial_resources(plan: ExperimentPlan) -> dict[str, float]:
    res = plan.resources
    if res.workers_per_trial:
        # The trial only drives a TorchTrainer whose workers hold the CPUs and GPUs; Tune needs a
        # non-empty request, so the driver asks for a token share of a CPU.
        return {"cpu": DRIVER_CPU}
    return {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial}


def named_trainable(plan: ExperimentPlan, per_trial: bool):
    """The trial function as a Tune trainable whose actor is named after its trial (the dashboard's
    Repr, which Ray records once, when the actor starts); a reused actor names the experiment."""
    base = tune.with_resources(wrap_function(tune.with_parameters(run_trial, plan=plan)), trial_resources(plan))

    class SspaTrial(base):
        def __repr__(self) -> str:
            return self.trial_name if per_trial else f"{plan.name} (trials in turn)"

    SspaTrial.__qualname__ = SspaTrial.__name__  # the dashboard's Class column
    return SspaTrial


class TrialNames:
    """Tune's trial names and folder names, the plan's (a class, not a closure: Tune pickles it)."""

    def __init__(self, plan: ExperimentPlan):
        self.plan = plan

    def __call__(self, trial) -> str:
        return self.plan.tune_trial_name(trial.config, trial.trial_id)


def tune_config(plan: ExperimentPlan, reuse_actors: bool = True) -> tune.TuneConfig:
    """Search, scheduler and concurrency.

    Single-device trial processes are reused unless the dashboard should show one actor per
    trial: a new one costs seconds of start-up and imports, a trial of a small configuration not
    much more. Trials that drive a TorchTrainer are never reused: when ASHA stops one, its thread
    is still inside ``TorchTrainer.fit()``, so Tune's reset of the actor for the next trial times
    out (2 s) and that trial is marked ERROR without a retry. A fresh actor per trial costs little
    next to the Train workers' start-up; ending the old actor ends its Train controller, and
    ReleaseOrphanedPlacementGroups frees its workers' resources.
    """
    reuse = reuse_actors and not plan.resources.workers_per_trial
    limit = plan.resources.max_concurrent
    if not limit and plan.resources.workers_per_trial:
        # Trial drivers hold almost nothing, so Tune alone would start every trial at once and
        # leave most of them waiting for workers.
        limit = _slots(plan)
    names = TrialNames(plan)
    return tune.TuneConfig(**plan.tune_search(limit, lambda: _slots(plan)), reuse_actors=reuse,
                           trial_name_creator=names, trial_dirname_creator=names)


def _slots(plan: ExperimentPlan) -> int:
    """How many trials the cluster runs at once: Optuna learns more from fewer parallel guesses."""
    res = plan.resources
    cluster = ray.cluster_resources()
    fits = cluster.get("CPU", 0) / res.cpus_per_trial
    if res.gpus_per_trial:
        fits = min(fits, cluster.get("GPU", 0) / res.gpus_per_trial)
    return max(1, math.floor(fits))


def _checkpoint_bytes(plan: ExperimentPlan) -> int:
    """The size of the largest trial checkpoint in local storage (0 when there is none)."""
    sizes = [sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
             for d in Path(plan.experiment_path).glob("*/checkpoint_*") if d.is_dir()]
    return max(sizes, default=0)
