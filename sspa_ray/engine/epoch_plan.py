"""One epoch planned on the host: data order, loss weights and (PA stage) PAM's pairing.

The clean mask changes only between epochs, so the whole epoch is planned from CPU copies and
sent to the device once; a step then only indexes these tensors. Every draw comes from a
generator seeded with (train.seed, epoch, stream[, rank]), so a run's position in the data is its
epoch count and a resumed run replays what an uninterrupted one does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sspa_ray.config import Config
from sspa_ray.engine.pam import pair_plan, trained_mask
from sspa_ray.labels import NUM_CLASSES
from sspa_ray.outputs import Stage


@dataclass
class EpochPlan:
    """One epoch of steps for this rank, all [steps, local_batch], on the device."""

    ids: torch.Tensor  # training-sample ids
    ids_host: np.ndarray
    weight: torch.Tensor  # loss weight (0/1)
    # [steps]: the divisor of each step's weighted CE sum. DDP averages the ranks' gradients, so
    # each rank divides by (weighted samples of the whole global batch) / world size: every sample
    # then weighs the same as on one device, whatever its rank's own count.
    norm: torch.Tensor
    partner: torch.Tensor | None = None  # PAM: position of the clean sample mixed in
    lam: torch.Tensor | None = None  # PAM: its Mixup weight


def plan_epoch(cfg: Config, stage: str, epoch: int, clean: np.ndarray, labels: np.ndarray, *, steps: int,
               rank: int, world_size: int, device: torch.device) -> EpochPlan:
    """The plan of 0-based `epoch` for `rank` of `world_size`, from the clean mask after the last epoch."""
    t = cfg.train
    local_batch = t.batch_size // world_size
    order = np.random.default_rng([t.seed, epoch, 0]).permutation(len(labels))
    every_rank = order[: steps * t.batch_size].reshape(steps, world_size, local_batch)
    ids = np.ascontiguousarray(every_rank[:, rank])
    pam = stage == Stage.PA and cfg.modules.pam
    # The weights of every rank's share are known here, so the global count needs no sync.
    weighted = trained_mask(clean[every_rank]) if pam else clean[every_rank]
    norm = np.maximum(weighted.sum(axis=(1, 2)), 1) / world_size

    def send(array: np.ndarray, dtype=None) -> torch.Tensor:
        return torch.from_numpy(array).to(device, dtype=dtype, non_blocking=True)

    plan = EpochPlan(ids=send(ids), ids_host=ids, weight=send(clean[ids], torch.float32), norm=send(norm, torch.float32))
    if pam:
        rng = np.random.default_rng([t.seed, epoch, 1, rank])
        partner, lam, trained = pair_plan(labels[ids], clean[ids], NUM_CLASSES, cfg.pam.alpha, cfg.pam.beta, rng)
        plan.partner, plan.lam, plan.weight = send(partner), send(lam), send(trained, torch.float32)
    return plan
