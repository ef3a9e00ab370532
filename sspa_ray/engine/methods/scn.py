"""SCN: Self-Cure Network (Wang et al., CVPR 2020), as a joint-training rival (paper Tables 3 and 4).

Re-implemented from the paper and the authors' public code (kaiwang960112/Self-Cure-Network):

- **Importance branch:** one linear unit and a sigmoid on the pooled feature give each sample a
  weight alpha in (0, 1) that multiplies its logits; the cross-entropy is taken on alpha * logits.
- **Rank regularisation:** each batch splits by alpha into a high group (the floor(0.7 B) largest,
  ``scn.high_share``) and a low group; the loss adds max(0, delta_1 - (mean_high - mean_low)) with
  delta_1 = ``scn.rank_margin`` = 0.15. The code adds it to the CE; the paper weighs the two by
  gamma (``scn.gamma``).
- **Relabelling:** from ``scn.relabel_epoch`` on, a sample whose highest probability exceeds the
  probability of its current label by more than delta_2 = ``scn.relabel_margin`` = 0.2 takes the
  argmax as its label. The code relabels any sample of the batch; the paper only the low group
  (``scn.relabel_scope``). The label table is the method's state and is checkpointed.

What we decide: a relabel found in epoch e takes effect from epoch e + 1 (as in the reference,
whose data-loader workers hold the epoch's labels), so an epoch's labels are fixed by its plan, the
ranks of a distributed run combine their relabels once at the end of the epoch, and a step never
syncs the host. The reference starts relabelling at epoch 10 of 70; ``scn.relabel_epoch=-1`` scales
that to round(10 * train.epochs / 70), at least 1 (epoch 2 of the synthetic 12, 11 of the paper's 80).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from sspa_ray.config import Config
from sspa_ray.engine.methods.base import JointMethod, register_method
from sspa_ray.outputs import Stage

# The reference schedule: relabelling from epoch 10 of 70; Adam with its learning rate decayed by
# 0.9 every epoch (method.recipe=own scales both to train.epochs).
REFERENCE_RELABEL_EPOCH, REFERENCE_EPOCHS, REFERENCE_DECAY = 10, 70, 0.9
REFERENCE_ADAM_LR, REFERENCE_WEIGHT_DECAY = 1e-3, 1e-4


class ImportanceHead(nn.Module):
    """One classifier and a sigmoid importance weight per sample, which multiplies its logits."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)
        self.importance = nn.Linear(in_features, 1)

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [B, D] -> (weighted logits alpha * fc(f) [B, C], alpha [B])."""
        alpha = torch.sigmoid(self.importance(f))
        return alpha * self.fc(f), alpha.squeeze(1)


def high_group(alpha: torch.Tensor, high_share: float) -> torch.Tensor:
    """[B] bool: the floor(high_share * B) samples of largest importance (at least one, never all)."""
    b = alpha.numel()
    tops = min(max(int(b * high_share), 1), b - 1)
    high = torch.zeros(b, dtype=torch.bool, device=alpha.device)
    high[torch.topk(alpha, tops).indices] = True
    return high


def rank_loss(alpha: torch.Tensor, high_share: float, margin: float) -> torch.Tensor:
    """max(0, margin - (mean alpha of the high group - mean alpha of the low group)), with no host sync."""
    high = high_group(alpha.detach(), high_share)
    mean_high = (alpha * high).sum() / high.sum()
    mean_low = (alpha * ~high).sum() / (~high).sum()
    return torch.clamp(margin - (mean_high - mean_low), min=0.0)


def relabel_targets(logits: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """[B] new labels: the argmax where max prob - prob of the current label > margin, else -1 (keep)."""
    probs = torch.softmax(logits.detach().float(), dim=1)
    top, predicted = probs.max(dim=1)
    given = probs.gather(1, labels.view(-1, 1)).squeeze(1)
    return torch.where(top - given > margin, predicted, torch.full_like(predicted, -1))


def relabel_epoch(cfg: Config) -> int:
    """The first 1-based epoch that relabels (scn.relabel_epoch, or the reference's scaled for -1)."""
    if cfg.scn.relabel_epoch >= 0:
        return cfg.scn.relabel_epoch
    return max(1, round(REFERENCE_RELABEL_EPOCH * cfg.train.epochs / REFERENCE_EPOCHS))


@register_method
class SCN(JointMethod):
    name = "scn"

    def __init__(self, cfg: Config, data, device, prepared=None):
        super().__init__(cfg, data, device)
        s = cfg.scn
        # gamma = None: the code's CE + rank loss; else the paper's gamma * rank + (1 - gamma) * CE.
        weights: tuple[float, float] = (1.0, 1.0) if s.gamma is None else (1.0 - s.gamma, s.gamma)
        self.ce_weight, self.rank_weight = weights
        self.current = self.labels_device.clone()  # the label table, relabelled as training goes
        self._pending = torch.full_like(self.current, -1)  # this epoch's relabels, applied at its end
        self._low = torch.zeros(self.num_samples, dtype=torch.bool, device=device)  # in a low group this epoch
        self.last_low = self._low.clone()  # the low groups of the last finished epoch (its record)
        self._figures: dict | None = None  # record()'s figures, computed once per epoch (one host sync)

    # ---- the model -----------------------------------------------------------------------------
    def head(self, feature_dim: int, num_classes: int) -> nn.Module:
        return ImportanceHead(feature_dim, num_classes)

    def probabilities(self, out) -> torch.Tensor:
        return torch.softmax(out[0].float(), dim=1)

    def optimizer(self, params, steps: list[int]):
        if self.cfg.method.recipe != "own":
            return None
        adam = torch.optim.Adam(params, lr=REFERENCE_ADAM_LR, weight_decay=REFERENCE_WEIGHT_DECAY)
        # The reference's total decay, 0.9^70, spread over train.epochs.
        decay = REFERENCE_DECAY ** (REFERENCE_EPOCHS / self.cfg.train.epochs)
        return adam, torch.optim.lr_scheduler.ExponentialLR(adam, gamma=decay), True

    # ---- an epoch ------------------------------------------------------------------------------
    def stage(self, epoch: int) -> Stage:
        return Stage.RELABEL if epoch + 1 >= relabel_epoch(self.cfg) else Stage.JOINT

    def train_labels(self) -> torch.Tensor:
        return self.current

    def sample_loss(self, out, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.ce_weight * F.cross_entropy(out[0].float(), y, reduction="none")

    def batch_loss(self, out) -> torch.Tensor | None:
        alpha = out[1].float()
        if alpha.numel() < 2:
            return None
        return self.rank_weight * rank_loss(alpha, self.cfg.scn.high_share, self.cfg.scn.rank_margin)

    def observe(self, stage: Stage, ids: torch.Tensor, out, y: torch.Tensor) -> None:
        alpha = out[1].detach().float()
        low = ~high_group(alpha, self.cfg.scn.high_share) if alpha.numel() > 1 else torch.zeros_like(ids, dtype=torch.bool)
        self._low[ids] = low
        if stage == Stage.RELABEL:
            new = relabel_targets(out[0], y, self.cfg.scn.relabel_margin)
            if self.cfg.scn.relabel_scope == "low":
                new = torch.where(low, new, torch.full_like(new, -1))
            self._pending[ids] = new

    def end_epoch(self, stage: Stage) -> None:
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self._pending, op=dist.ReduceOp.MAX)
            low = self._low.to(torch.uint8)
            dist.all_reduce(low, op=dist.ReduceOp.MAX)
            self._low = low.bool()
        found = self._pending >= 0
        self.current = torch.where(found, self._pending, self.current)
        self._pending.fill_(-1)
        self.last_low, self._low = self._low, torch.zeros_like(self._low)
        self._figures = None

    # ---- outputs -------------------------------------------------------------------------------
    def record(self) -> dict:
        """Relabelling measured on the aux set: how much, how right, what it broke; the low groups' noise.
        The record and metrics.json's summary both read it every epoch, so it is computed once."""
        if self._figures is None:
            self._figures = self._measure()
        return dict(self._figures)

    def _measure(self) -> dict:
        if self.data.aux_train is None:
            return {"clean_share": None}
        n = self.n_target
        given, now = self.labels[n:], self.current[n:].cpu().numpy()
        changed = now != given
        out = {"clean_share": None, "relabelled_share": float(changed.mean())}
        truth = self.data.aux_true_labels
        if truth is not None:
            low = self.last_low[n:].cpu().numpy()
            noisy = given != truth
            out.update(
                # Share of the relabelled aux samples whose new label is their true one.
                relabel_precision=float((now[changed] == truth[changed]).mean()) if changed.any() else None,
                # Aux samples whose given label was right and relabelling changed.
                relabel_broken=int((changed & ~noisy).sum()),
                # Noise rate of the low-importance groups, against the aux set's (1 - aux_base_rate).
                low_importance_noise=float(noisy[low].mean()) if low.any() else None,
                aux_base_rate=float((~noisy).mean()),
            )
        return out

    def progress(self, record: dict) -> str:
        share = record.get("relabelled_share")
        return f"relabelled aux {'-' if share is None else f'{share:.1%}'}"

    def summary(self) -> dict:
        record = self.record()
        record.pop("clean_share")
        return {"relabelling": record} if record else {}

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"labels": self.current.cpu().clone(), "last_low": self.last_low.cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        if state["labels"].shape != self.current.shape:
            raise ValueError(f"SCN state holds {tuple(state['labels'].shape)} labels, expected {tuple(self.current.shape)}")
        self.current = state["labels"].to(self.device)
        self.last_low = state["last_low"].to(self.device, torch.bool)
        self._figures = None
