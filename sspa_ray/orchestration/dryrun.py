"""``--dry-run``: what an experiment would run and what it would cost, without starting Ray.

The estimate is images to train (epochs x images per epoch) over a throughput in images per second.
- Images per epoch come from the datasets' label files when a data root is given, from the
  official split sizes when it is not (``sspa_ray.data.official_size``; the output says which),
  and from the synthetic benchmark's sizes for ``--target synthetic``.
- The throughput is the one the user passes (``--throughput``), or a figure measured once per
  device, backbone, image size, batch and precision and then cached
  (:func:`sspa_ray.engine.throughput.estimate`). Where there is none (a GPU run planned without a
  GPU, large images on a CPU), the plan is printed with the reason instead of a time.
Evaluation and Ray's start-up are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from sspa_ray.config import Config
from sspa_ray.data import configured_root, data_root, official_size, read_listing
from sspa_ray.data.synthetic import split_sizes
from sspa_ray.orchestration.plan import ExperimentPlan

# Device counts the estimate is shown for, besides one.
FLEETS = (8,)


class EpochSizes:
    """Images one epoch trains on, per config; each label file is read once and the official sizes
    stand in for a dataset whose root is not given (`official` lists those used)."""

    def __init__(self):
        self._counts: dict[tuple, int] = {}
        self.official: dict[str, int] = {}

    def __call__(self, cfg: Config) -> int:
        """The target's train split plus the aux share, in whole batches."""
        if cfg.data.is_synthetic:
            sizes = split_sizes(cfg.data.synthetic_scale)
            n_target, n_aux = sizes["rafdb/train"], sizes["affectnet/train"]
        else:
            n_target = self._train_size(cfg.data.target, cfg.data.root)
            n_aux = self._train_size(cfg.data.aux, cfg.data.root) if cfg.data.uses_aux else 0
        aux = round(n_aux * cfg.data.aux_ratio) if cfg.data.uses_aux else 0
        return (n_target + aux) // cfg.train.batch_size * cfg.train.batch_size

    def _train_size(self, dataset: str, root: str | None) -> int:
        if configured_root(root) is None:
            self.official[dataset] = official_size(dataset, "train")
            return self.official[dataset]
        key = (dataset, str(data_root(root)))
        if key not in self._counts:
            self._counts[key] = len(read_listing(dataset, "train", data_root(root)).labels)
        return self._counts[key]


def _speed_key(cfg: Config) -> tuple:
    """What the throughput mostly depends on; the burst runs the slowest modules (all on) for each."""
    return (cfg.model.backbone, cfg.data.image_size, cfg.train.batch_size, cfg.train.precision, cfg.train.device)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds / 60:.1f} min"


def describe_plan(plan: ExperimentPlan, *, throughput: float | None = None,
                  log: Callable[[str], None] = print) -> dict:
    """Print the plan (trials, sharing, resources, time) and return its figures; `seconds` is None
    when there is no throughput to estimate with."""
    configs = plan.describe(log)
    res = plan.resources
    n = len(configs)
    if res.workers_per_trial:
        per_trial = f"{res.workers_per_trial} Train workers with {res.cpus_per_trial:g} CPUs and {res.gpus_per_trial:g} GPUs in all"
    else:
        per_trial = f"{res.cpus_per_trial:g} CPU and {res.gpus_per_trial:g} GPU"
    log(f"resources per trial: {per_trial}")

    sizes = EpochSizes()
    images = [cfg.train.epochs * sizes(cfg) for cfg in configs]
    if sizes.official:
        log("images per epoch from the official split sizes, as no --data-root is given: "
            + ", ".join(f"{name} {count:,} train" for name, count in sizes.official.items()))
    speeds, missing = _throughputs(configs, throughput, gpu_run=res.gpus_per_trial > 0, torch_threads=res.torch_threads,
                                   log=log)
    if missing:
        log(f"estimate: none; {missing}")
        return {"trials": n, "seconds": None, "per_trial_seconds": None}
    seconds = [count / speeds[_speed_key(cfg)] for count, cfg in zip(images, configs, strict=True)]
    total = sum(seconds)
    unit = "GPU" if res.gpus_per_trial else "device"
    per_device = max(1, math.floor(1 / res.gpus_per_trial)) if 0 < res.gpus_per_trial < 1 else 1
    devices_per_trial = max(1.0, res.gpus_per_trial) if res.gpus_per_trial else 1.0
    how = "given with --throughput" if throughput is not None else "measured, above"
    log(f"estimate: ~{_hours(total * devices_per_trial)} of {unit} time for {n} trials "
        f"(throughput {how}; training steps only, evaluation and start-up not counted)")
    for fleet in (1, *FLEETS):
        slots = max(1, int(fleet * per_device / devices_per_trial))
        wall = max(total / slots, max(seconds, default=0.0))
        log(f"  ~{_hours(wall)} on {fleet} {unit}{'s' if fleet > 1 else ''} at {per_device} trial"
            f"{'s' if per_device > 1 else ''} per {unit}")
    return {"trials": n, "seconds": total, "per_trial_seconds": seconds}


def _throughputs(configs: list[Config], given: float | None, *, gpu_run: bool, torch_threads: int,
                 log: Callable[[str], None]) -> tuple[dict[tuple, float], str]:
    """img/s per speed key of the trials, and why some have none ('' when every key has one)."""
    speeds: dict[tuple, float] = {}
    for cfg in configs:
        key = _speed_key(cfg)
        if key in speeds:
            continue
        if given is not None:
            speeds[key] = given
            continue
        from sspa_ray.engine.throughput import NoEstimate, estimate  # torch and the engine: only when measuring

        trial = cfg.copy()
        if not trial.train.num_threads:
            trial.set("train.num_threads", torch_threads)  # what each trial process will have
        found = estimate(trial, gpu_run=gpu_run)
        if isinstance(found, NoEstimate):
            return speeds, found.reason
        speeds[key] = found.img_per_s
        log(f"throughput {found.img_per_s:.0f} img/s for {cfg.model.backbone} at {cfg.data.image_size} px ({found.how})")
    return speeds, ""
