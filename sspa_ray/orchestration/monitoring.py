"""What users watch an experiment with, besides the terminal table: trackers and Grafana.

- ``--logger`` picks Ray's logger callbacks. Tune's JSON logger always runs, because
  ``results.parquet`` is read from each trial's ``result.json``. MLflow and W&B runs carry the
  trial's configuration group (its name without the seed), so the seeds of one configuration sit
  together.
- The driver never loads torch or MLflow for callbacks that do not need them (``_tensorboardx_without_torch``, ``_skip_callback_count_without_usage_stats``).
- ``sspa_ray_grafana_dashboard.json`` (one panel per ``ray_sspa_trial_*`` gauge, one line per trial) is
  copied into the folder from which Ray's generated Grafana configuration provisions dashboards:
  ``<session>/metrics/grafana/dashboards`` (or ``$RAY_METRICS_GRAFANA_DASHBOARD_OUTPUT_DIR``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

from sspa_ray.orchestration.plan import ExperimentPlan
from sspa_ray.tracking import GROUP_TAG, MLFLOW_DIR, WANDB_PROJECT, mlflow_uri, wandb_mode

GRAFANA_DASHBOARD = Path(__file__).with_name("sspa_ray_grafana_dashboard.json")
# One of the dashboards Ray generates: its presence says Ray's Grafana configuration is in place.
RAY_DEFAULT_DASHBOARD = "default_grafana_dashboard.json"


def logger_callbacks(plan: ExperimentPlan) -> list:
    _skip_callback_count_without_usage_stats()
    callbacks: list = [JsonLoggerCallback()]
    for name in plan.loggers:
        if name == "tensorboard":
            _tensorboardx_without_torch()
            callbacks.append(TBXLoggerCallback())  # hparams: each trial's dotted config (Tune's evaluated params)
        elif name == "csv":
            callbacks.append(CSVLoggerCallback())
        elif name == "mlflow":
            callbacks.append(_mlflow_callback(plan))
        elif name == "wandb":
            callbacks.append(_wandb_callback(plan))
    return callbacks


def _tensorboardx_without_torch() -> None:
    """Import tensorboardX with torch hidden, before TBXLoggerCallback imports it: tensorboardX loads
    torch, when installed, only to accept torch tensors in its writer (1.8 s of CPU at every driver
    start), and the driver logs Python numbers. A process that has torch or tensorboardX already
    (``sspa-ray train``, a notebook) keeps the ordinary import."""
    if "torch" in sys.modules or "tensorboardX" in sys.modules:
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        pass  # not installed: TBXLoggerCallback says so
    finally:
        del sys.modules["torch"]


def _skip_callback_count_without_usage_stats() -> None:
    """With usage stats off (``cluster.connect``'s default), Tune still counts the callbacks by class
    for its telemetry, importing MLflow, W&B and Comet to do so (0.9 s of CPU per driver), and then
    records nothing. A private name of Ray 2.60: if it moves, this only stops helping."""
    from ray._common.usage.usage_lib import usage_stats_enabled
    from ray.air._internal import usage as air_usage

    if not usage_stats_enabled():
        air_usage.tag_callbacks = lambda callbacks: False


def _mlflow_callback(plan: ExperimentPlan):
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class GroupedMLflowLoggerCallback(MLflowLoggerCallback):
        def log_trial_start(self, trial) -> None:
            # The parent copies self.tags into the run it creates for the trial.
            self.tags = {GROUP_TAG: plan.trial_name(trial.config, seed=False)}
            super().log_trial_start(trial)

    return GroupedMLflowLoggerCallback(tracking_uri=mlflow_uri(plan.out / MLFLOW_DIR), experiment_name=plan.name,
                                       save_artifact=False)


def _wandb_callback(plan: ExperimentPlan):
    from ray.air.integrations.wandb import WandbLoggerCallback

    mode = wandb_mode()
    os.environ["WANDB_MODE"] = mode  # Ray skips the API-key lookup in offline mode

    class GroupedWandbLoggerCallback(WandbLoggerCallback):
        def log_trial_start(self, trial) -> None:
            self.group = plan.trial_name(trial.config, seed=False)
            super().log_trial_start(trial)

    return GroupedWandbLoggerCallback(project=WANDB_PROJECT, mode=mode, dir=str(plan.out))


def grafana_dashboards_dir() -> Path | None:
    """Where Ray's Grafana provisioning looks for dashboards on this node; None when Ray's session
    is not on this machine (a Ray Client driver)."""
    import ray

    configured = os.environ.get("RAY_METRICS_GRAFANA_DASHBOARD_OUTPUT_DIR")
    if configured:
        return Path(configured)
    node = getattr(ray._private.worker, "_global_node", None)
    if node is None:
        return None
    return Path(node.get_session_dir_path()) / "metrics" / "grafana" / "dashboards"


def install_grafana_dashboard(log: Callable[[str], None] = print) -> Path | None:
    """Copy the sspa-ray dashboard next to Ray's. Ray writes its Grafana configuration (emptying the
    folder first) before ``ray.init`` returns; without a dashboard process there is none to join."""
    folder = grafana_dashboards_dir()
    if folder is None or not (folder / RAY_DEFAULT_DASHBOARD).is_file():
        return None
    target = folder / GRAFANA_DASHBOARD.name
    shutil.copyfile(GRAFANA_DASHBOARD, target)
    log(f"Grafana dashboard of the sspa-ray gauges: {target}")
    return target
