"""Sample Selection Module (paper section 3.2, equations 3-4 and Algorithm 1).

Every training sample keeps k thresholds tau (one per expert), initialised to 1/C. During an SS
epoch the training forward passes record, for each sample, every expert's confidence max(p_i)
and its probability of the given label p_i(y) (no extra pass, as in Algorithm 3). At the end of
the epoch the thresholds of the samples seen take one EMA step,
tau_i <- eta * tau_i + (1 - eta) * max(p_i), and a sample is clean when p_i(y) > tau_i for every
expert. The clean set decided at the end of epoch t is the one the loss of epoch t + 1 uses.

Samples not seen in an epoch (the remainder dropped by fixed-size batches) keep their thresholds
and their clean flag. Under torch.distributed every rank records the samples of its own shard
into zero buffers and one all_reduce(SUM) combines them, so all ranks hold identical state; the
sums are divided by the ``seen`` count, so a sample recorded on several ranks keeps its mean.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class SampleSelector:
    def __init__(
        self,
        num_samples: int,
        experts: int,
        num_classes: int,
        momentum: float,
        *,
        always_clean: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
    ):
        self.experts = experts
        self.momentum = momentum
        self.device = torch.device(device)
        self.thresholds = torch.full((num_samples, experts), 1.0 / num_classes, device=self.device)
        self.clean = torch.ones(num_samples, dtype=torch.bool, device=self.device)
        self.always_clean = None if always_clean is None else always_clean.to(self.device, torch.bool)
        # Per-epoch record, one row per sample: [max(p_1..k), p_1..k(y), seen].
        self._epoch = torch.zeros(num_samples, 2 * experts + 1, device=self.device)

    def observe(self, ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Record a training batch: sample ids [B], per-expert logits [k, B, C], labels [B]."""
        probs = torch.softmax(logits.detach().float(), dim=2)
        confidence = probs.amax(dim=2)  # [k, B]
        given = probs.gather(2, labels.view(1, -1, 1).expand(self.experts, -1, 1)).squeeze(2)
        seen = torch.ones(1, ids.numel(), device=probs.device)
        self._epoch[ids] = torch.cat([confidence, given, seen]).T

    def end_epoch(self) -> None:
        """Combine the epoch's record across ranks, step the thresholds and re-select."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self._epoch, op=dist.ReduceOp.SUM)
        k = self.experts
        times = self._epoch[:, 2 * k : 2 * k + 1]
        seen = times[:, 0] > 0
        confidence, given = (self._epoch[:, : 2 * k] / times.clamp(min=1)).split(k, dim=1)
        stepped = self.momentum * self.thresholds + (1.0 - self.momentum) * confidence
        self.thresholds = torch.where(seen[:, None], stepped, self.thresholds)
        selected = (given > self.thresholds).all(dim=1)
        self.clean = torch.where(seen, selected, self.clean)
        if self.always_clean is not None:
            self.clean |= self.always_clean
        self._epoch.zero_()

    def state_dict(self) -> dict:
        return {"thresholds": self.thresholds.clone(), "clean": self.clean.clone()}

    def load_state_dict(self, state: dict) -> None:
        if state["thresholds"].shape != self.thresholds.shape:
            got, want = tuple(state["thresholds"].shape), tuple(self.thresholds.shape)
            raise ValueError(f"SSM state holds {got} thresholds, expected {want}")
        self.thresholds = state["thresholds"].to(self.device)
        self.clean = state["clean"].to(self.device, torch.bool)
