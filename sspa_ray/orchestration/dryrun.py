"""``--dry-run``: what an experiment would run and what it would cost, without starting Ray.

The estimate is images to train (epochs x images per epoch, from the datasets' label files or the
synthetic benchmark's sizes) over a throughput in images per second: one the user passes
(``--throughput``), or one measured by a short burst of the real engine on this machine's device
(:mod:`sspa_ray.engine.throughput`), once per distinct backbone / image size / batch / modules.
Evaluation and Ray's start-up are not counted.
"""

from __future__ import annotations

import math
from typing import Callable

from sspa_ray.config import Config
from sspa_ray.data import data_root, read_listing
from sspa_ray.data.synthetic import split_sizes
from sspa_ray.orchestration.plan import ExperimentPlan

# Device counts the estimate is shown for, besides one.
FLEETS = (8,)


def train_images_per_epoch(cfg: Config) -> int:
    """Images one epoch trains on: the target's train split plus the aux share, in whole batches."""
    if cfg.data.target == "synthetic":
        sizes = split_sizes(cfg.data.synthetic_scale)
        n_target, n_aux = sizes["rafdb/train"], sizes["affectnet/train"]
    else:
        root = data_root(cfg.data.root)
        n_target = len(read_listing(cfg.data.target, "train", root).labels)
        n_aux = len(read_listing(cfg.data.aux, "train", root).labels) if cfg.data.aux != "none" and cfg.data.aux_ratio > 0 else 0
    aux = round(n_aux * cfg.data.aux_ratio) if cfg.data.aux != "none" else 0
    return (n_target + aux) // cfg.train.batch_size * cfg.train.batch_size


def _speed_key(cfg: Config) -> tuple:
    """What the throughput mostly depends on; the burst runs the slowest modules (all on) for each."""
    return (cfg.model.backbone, cfg.data.image_size, cfg.train.batch_size, cfg.train.precision, cfg.train.device)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds / 60:.1f} min"


def describe_plan(plan: ExperimentPlan, *, throughput: float | None = None,
                  log: Callable[[str], None] = print) -> dict:
    """Print the plan (trials, sharing, resources, time) and return its figures."""
    configs = plan.describe(log)
    res = plan.resources
    n = len(configs)
    if res.workers_per_trial:
        per_trial = f"{res.workers_per_trial} Train workers with {res.cpus_per_trial:g} CPUs and {res.gpus_per_trial:g} GPUs in all"
    else:
        per_trial = f"{res.cpus_per_trial:g} CPU and {res.gpus_per_trial:g} GPU"
    log(f"resources per trial: {per_trial}")

    speeds: dict[tuple, float] = {}
    how = "given with --throughput"
    seconds = []
    for cfg in configs:
        key = _speed_key(cfg)
        if key not in speeds:
            if throughput is not None:
                speeds[key] = throughput
            else:
                measured = _measure(cfg)
                speeds[key], how = measured.img_per_s, measured.how
                log(f"throughput {measured.img_per_s:.0f} img/s for {cfg.model.backbone} at {cfg.data.image_size} px ({measured.how})")
        seconds.append(cfg.train.epochs * train_images_per_epoch(cfg) / speeds[key])
    total = sum(seconds)
    unit = "GPU" if res.gpus_per_trial else "device"
    per_device = max(1, math.floor(1 / res.gpus_per_trial)) if 0 < res.gpus_per_trial < 1 else 1
    devices_per_trial = max(1.0, res.gpus_per_trial) if res.gpus_per_trial else 1.0
    log(f"estimate: ~{_hours(total * devices_per_trial)} of {unit} time for {n} trials "
        f"(throughput {how}; training steps only, evaluation and start-up not counted)")
    for fleet in (1, *FLEETS):
        slots = max(1, int(fleet * per_device / devices_per_trial))
        wall = max(total / slots, max(seconds, default=0.0))
        log(f"  ~{_hours(wall)} on {fleet} {unit}{'s' if fleet > 1 else ''} at {per_device} trial"
            f"{'s' if per_device > 1 else ''} per {unit}")
    return {"trials": n, "seconds": total, "per_trial_seconds": seconds}


def _measure(cfg: Config):
    from sspa_ray.engine.throughput import measure
    return measure(cfg)
