"""SSPA-JT (the paper): MoE head, Sample Selection Module, fixed target set, Paired Augmentation.

The four ``modules.*`` keys switch its parts (paper Table 5). SS stage (epochs <
``train.selection_epochs``): the loss covers the samples that were clean after the previous epoch
(all at first), and SSM re-selects from the predictions of those same forward passes. PA stage:
the clean/noisy split is frozen and PAM replaces each batch's noisy samples by Mixups with clean
ones (without PAM they get zero loss weight).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sspa_ray.config import Config
from sspa_ray.defaults import horizon_warning
from sspa_ray.engine.epoch_plan import EpochPlan, shuffled_order, to_device, weighted_plan
from sspa_ray.engine.methods.base import JointMethod, register_method
from sspa_ray.engine.metrics import selection_metrics
from sspa_ray.engine.pam import pair_plan, trained_mask
from sspa_ray.engine.run_files import write_selection
from sspa_ray.engine.selection import SampleSelector
from sspa_ray.labels import NUM_CLASSES
from sspa_ray.model import expert_probabilities, moe_head
from sspa_ray.outputs import Stage


@register_method
class SSPAJT(JointMethod):
    name = "sspa_jt"

    def __init__(self, cfg: Config, data, device, prepared=None):
        super().__init__(cfg, data, device)
        is_target = torch.arange(self.num_samples) < self.n_target
        self.selector = SampleSelector(self.num_samples, cfg.experts, NUM_CLASSES, cfg.ssm.momentum,
                                       always_clean=is_target if cfg.modules.fix_target else None, device=device)
        self._sync_clean()

    def _sync_clean(self) -> None:
        # The epoch's one host copy of the clean mask: the next plan, the record and selection.csv read it.
        self.clean = self.selector.clean.cpu().numpy()

    # ---- the model -----------------------------------------------------------------------------
    def head(self, feature_dim: int, num_classes: int) -> nn.Module:
        return moe_head(self.cfg, feature_dim, num_classes)

    def probabilities(self, out: torch.Tensor) -> torch.Tensor:
        return expert_probabilities(out)

    # ---- an epoch ------------------------------------------------------------------------------
    def stage(self, epoch: int) -> Stage:
        return Stage.SS if epoch < self.cfg.train.selection_epochs else Stage.PA

    def plan(self, epoch: int, *, rank: int, world_size: int) -> EpochPlan:
        cfg, clean = self.cfg, self.clean
        every_rank = shuffled_order(cfg, epoch, self.num_samples, steps=self.steps(epoch), world_size=world_size)
        pam = self.stage(epoch) == Stage.PA and cfg.modules.pam
        weighted = trained_mask(clean[every_rank]) if pam else clean[every_rank]
        plan = weighted_plan(every_rank, weighted, self.train_labels(), rank=rank, world_size=world_size,
                             device=self.device)
        if pam:
            ids = plan.ids_host
            rng = np.random.default_rng([cfg.train.seed, epoch, 1, rank])
            partner, lam, trained = pair_plan(self.labels[ids], clean[ids], NUM_CLASSES, cfg.pam.alpha, cfg.pam.beta, rng)
            plan.partner, plan.lam = to_device(partner, self.device), to_device(lam, self.device)
            plan.weight = to_device(trained, self.device, torch.float32)
        return plan

    def sample_loss(self, out: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        # The mean over the k experts of each one's cross-entropy.
        k = out.shape[0]
        return F.cross_entropy(out.float().flatten(0, 1), y.repeat(k), reduction="none").view(k, -1).mean(0)

    def _selecting(self, stage: Stage) -> bool:
        return stage == Stage.SS and self.cfg.modules.ssm

    def observe(self, stage: Stage, ids: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> None:
        if self._selecting(stage):
            self.selector.observe(ids, out, y)

    def end_epoch(self, stage: Stage) -> None:
        if self._selecting(stage):
            self.selector.end_epoch()
            self._sync_clean()

    # ---- outputs -------------------------------------------------------------------------------
    def notes(self, epoch: int) -> list[str]:
        warning = horizon_warning(self.cfg)
        return [warning] if warning and epoch < self.cfg.train.selection_epochs else []

    def _aux_selection(self) -> dict | None:
        if self.data.aux_train is None:
            return None
        return selection_metrics(self.clean[self.n_target :], self.data.aux_train.labels, self.data.aux_true_labels)

    def record(self) -> dict:
        selection = self._aux_selection()
        out = {"clean_share": selection["clean_share"] if selection else None}
        if selection and "precision" in selection:
            out.update(selection_precision=selection["precision"], selection_recall=selection["recall"],
                       aux_base_rate=selection["aux_base_rate"])
        return out

    def summary(self) -> dict:
        selection = self._aux_selection()
        return {} if selection is None else {"selection": selection}

    def write_files(self, run_dir: Path, epoch: int) -> None:
        if epoch == self.cfg.train.selection_epochs:  # the split PA trains with
            write_selection(run_dir, self.data, self.labels, self.clean)

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"selector": self.selector.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.selector.load_state_dict(state["selector"])
        self._sync_clean()
