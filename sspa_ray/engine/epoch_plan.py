"""One epoch planned on the host: data order, loss weights, labels and (SSPA-JT's PA stage) pairing.

Weights and labels change only between epochs, so the whole epoch is planned from CPU copies and
sent to the device once; a step then only indexes these tensors. Every draw comes from a
generator seeded with (train.seed, epoch, stream[, rank]), so a run's position in the data is its
epoch count and a resumed run replays what an uninterrupted one does. A method builds its plan
from the helpers here (methods/base.py: ``JointMethod.plan``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sspa_ray.config import Config


@dataclass
class EpochPlan:
    """One epoch of steps for this rank, all [steps, local_batch] on the device, but `labels`."""

    ids: torch.Tensor  # training-sample ids
    ids_host: np.ndarray
    weight: torch.Tensor  # per-sample loss weight (SSPA-JT: 0/1)
    # [steps]: the divisor of each step's weighted loss sum. DDP averages the ranks' gradients, so
    # each rank divides by (weighted samples of the whole global batch) / world size: every sample
    # then weighs the same as on one device, whatever its rank's own count.
    norm: torch.Tensor
    labels: torch.Tensor  # [num_samples]: the label of every training sample this epoch (SCN relabels)
    partner: torch.Tensor | None = None  # PAM: position of the clean sample mixed in
    lam: torch.Tensor | None = None  # PAM: its Mixup weight

    @property
    def steps(self) -> int:
        return len(self.ids_host)


def to_device(array: np.ndarray, device: torch.device, dtype=None) -> torch.Tensor:
    return torch.from_numpy(array).to(device, dtype=dtype, non_blocking=True)


def shuffled_order(cfg: Config, epoch: int, n: int, *, steps: int, world_size: int) -> np.ndarray:
    """[steps, world_size, local_batch] sample ids: a seeded permutation of 0..n, cut into global batches."""
    order = np.random.default_rng([cfg.train.seed, epoch, 0]).permutation(n)
    return order[: steps * cfg.train.batch_size].reshape(steps, world_size, cfg.train.batch_size // world_size)


def weighted_plan(every_rank: np.ndarray, weight: np.ndarray, labels: torch.Tensor, *, rank: int, world_size: int,
                  device: torch.device) -> EpochPlan:
    """The plan of `rank` from every rank's ids and loss weights ([steps, world_size, local_batch] each).

    The weights of every rank's share are known here, so the global count needs no sync."""
    ids = np.ascontiguousarray(every_rank[:, rank])
    norm = np.maximum(weight.sum(axis=(1, 2)), 1) / world_size
    return EpochPlan(ids=to_device(ids, device), ids_host=ids, weight=to_device(weight[:, rank], device, torch.float32),
                     norm=to_device(norm, device, torch.float32), labels=labels)


def shuffled_plan(cfg: Config, epoch: int, weight: np.ndarray, labels: torch.Tensor, *, steps: int, rank: int,
                  world_size: int, device: torch.device) -> EpochPlan:
    """A seeded shuffle of every training sample, each with its loss weight from `weight` [num_samples]."""
    every_rank = shuffled_order(cfg, epoch, len(weight), steps=steps, world_size=world_size)
    return weighted_plan(every_rank, weight[every_rank], labels, rank=rank, world_size=world_size, device=device)
