"""What a joint-training method is to the Trainer: one small abstract class.

The Trainer owns what every method shares (the backbone, the optimiser and its schedule, data on
the device, augmentation, the steps, evaluation, checkpoints); a method owns what differs between
methods, and the Trainer never asks which method it holds:

- ``head``: the layers after the backbone's pooled feature, and ``probabilities``, the test-time
  class probabilities from the head's output;
- ``plan``: each epoch's data order, per-sample loss weights and labels (and PAM's pairing);
- ``prepare``: setup before the Trainer exists (DCJT's annotator), cached;
- ``sample_loss`` / ``batch_loss``: the loss of a step, from the head's output;
- ``observe``: what it records during a step; ``end_epoch``: what it does with that afterwards;
- ``record``: its figures of the epoch (selection or relabelling quality) for metrics.json;
- ``state_dict`` / ``load_state_dict``: saved under ``"method"`` in every checkpoint.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sspa_ray.config import METHODS, Config
from sspa_ray.engine.epoch_plan import EpochPlan, shuffled_plan
from sspa_ray.outputs import Stage
from sspa_ray.registry import Registry


class JointMethod(abc.ABC):
    """One joint-training method; subclasses register with ``@register_method``."""

    name: ClassVar[str]  # the value of method.name

    @classmethod
    def prepare(cls, cfg: Config, data, model_cfg: Config, *, progress: bool = True) -> dict | None:
        """Setup that may train or read something (cached), done by fit() before the Trainer is built;
        its result reaches the constructor as `prepared`. DCJT: the target's pseudo valence/arousal."""
        return None

    def __init__(self, cfg: Config, data, device: torch.device, prepared: dict | None = None):
        self.cfg = cfg
        self.data = data
        self.device = device
        self.n_target = len(data.target_train.labels)
        parts = [data.target_train] + ([data.aux_train] if data.aux_train is not None else [])
        self.labels = np.concatenate([p.labels for p in parts]).astype(np.int64)  # the given labels
        self.labels_device = torch.from_numpy(self.labels).to(device)
        self.num_samples = len(self.labels)

    # ---- the model -----------------------------------------------------------------------------
    @abc.abstractmethod
    def head(self, feature_dim: int, num_classes: int) -> nn.Module:
        """The layers that map the backbone's pooled feature [B, D] to this method's output."""

    @abc.abstractmethod
    def probabilities(self, out) -> torch.Tensor:
        """The head's output -> class probabilities [B, C], the test-time prediction."""

    def optimizer(self, params, steps: list[int]):
        """The method's own recipe (method.recipe=own) as (optimizer, scheduler, stepped_per_epoch), or None
        for the shared SGD + cosine of train.*. `steps` holds each epoch's optimiser steps. The scheduler
        is stepped once per epoch when stepped_per_epoch, else after every optimiser step."""
        return None

    # ---- an epoch ------------------------------------------------------------------------------
    def stage(self, epoch: int) -> Stage:
        """The stage of 0-based `epoch` (the progress line and metrics.json name it)."""
        return Stage.JOINT

    def steps(self, epoch: int) -> int:
        """Optimiser steps of 0-based `epoch`: by default one pass over every training sample."""
        return self.num_samples // self.cfg.train.batch_size

    def plan(self, epoch: int, *, rank: int, world_size: int) -> EpochPlan:
        """This rank's plan of 0-based `epoch`: by default a seeded shuffle, every sample weight 1."""
        return shuffled_plan(self.cfg, epoch, np.ones(self.num_samples, dtype=bool), self.train_labels(),
                             steps=self.steps(epoch), rank=rank, world_size=world_size, device=self.device)

    def train_labels(self) -> torch.Tensor:
        """[num_samples] on the device: every training sample's label for the next epoch (default: the given)."""
        return self.labels_device

    def sample_loss(self, out, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Per-sample loss [B] of the head's output against labels y (of training samples `ids`); the Trainer
        weighs and averages it."""
        return F.cross_entropy(out.float(), y, reduction="none")

    def batch_loss(self, out) -> torch.Tensor | None:
        """A loss term of the whole batch added to the weighted mean (SCN's rank regularisation), or None."""
        return None

    def observe(self, stage: Stage, ids: torch.Tensor, out, y: torch.Tensor) -> None:
        """Record a training step (no host sync: this runs every step)."""

    def end_epoch(self, stage: Stage) -> None:
        """After the epoch's last step, before evaluation and the checkpoint."""

    # ---- outputs -------------------------------------------------------------------------------
    def notes(self, epoch: int) -> list[str]:
        """Lines to print when a run starts or resumes at `epoch` (warnings about the config)."""
        return []

    def record(self) -> dict:
        """This method's figures after an epoch, merged into the epoch's record (metrics.json history).
        ``clean_share`` is always present (None where the method selects nothing)."""
        return {"clean_share": None}

    def progress(self, record: dict) -> str:
        """Its part of the epoch's progress line."""
        share = record["clean_share"]
        return f"clean aux {'-' if share is None else f'{share:.1%}'}"

    def summary(self) -> dict:
        """Extra sections of metrics.json at the end of a run."""
        return {}

    def write_files(self, run_dir: Path, epoch: int) -> None:
        """Write the method's own files of the run folder after `epoch` finished epochs (rank 0 only)."""

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict() saved; a method without state has nothing to restore."""


# method.name -> its class, for the names config.METHODS declares (registry.py checks both ways).
METHOD_CLASSES: Registry[type[JointMethod]] = Registry(
    "method.name", METHODS, "METHODS",
    add="sspa_ray/engine/methods/{name}.py with a @register_method class whose name is '{name}', imported in "
        "sspa_ray/engine/methods/__init__.py")


def register_method(cls: type[JointMethod]) -> type[JointMethod]:
    """Class decorator: makes `cls` available as ``method.name=<cls.name>``."""
    return METHOD_CLASSES.register(cls.name, cls)
