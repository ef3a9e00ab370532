"""Mixture-of-Experts head (paper section 3.1, equations 1-2).

k single-linear experts FFN_i and a gate w = Gate(f); expert i predicts
p_i = softmax(FFN_i(f) * w_i). The paper leaves two things open; we decide:

- the gate is one linear layer followed by a softmax over the k experts, multiplied by k: the
  weights are positive and average 1 (a scale per expert, not a top-k router; every expert sees
  every sample). Without the factor k every logit starts k times smaller than a plain linear
  head's, which acts as a softmax temperature of k; on the synthetic benchmark that slowed
  learning badly (74% vs 92% test accuracy after 12 epochs with k = 3);
- at test time the prediction is the mean of the k probability vectors p_i.

With ``modules.moe`` off the head is one linear layer (k = 1, no gate).
"""

from __future__ import annotations

import torch
from torch import nn

from sspa_ray.config import Config


class MoEHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int, experts: int, gated: bool = True):
        super().__init__()
        if not gated and experts != 1:
            raise ValueError("an ungated head has exactly one expert")
        self.experts = experts
        self.num_classes = num_classes
        # All experts in one matmul; fan-in is the same as k separate nn.Linear(in, C) layers, so
        # the default initialisation matches theirs.
        self.ffn = nn.Linear(in_features, experts * num_classes)
        self.gate = nn.Linear(in_features, experts) if gated else None

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Features [B, D] -> logits [k, B, C], with logit_i = FFN_i(f) * w_i."""
        logits = self.ffn(f).view(f.shape[0], self.experts, self.num_classes)
        if self.gate is not None:
            logits = logits * (self.experts * torch.softmax(self.gate(f), dim=1)).unsqueeze(2)
        return logits.transpose(0, 1)


def expert_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Per-expert logits [k, B, C] -> the combined prediction [B, C]: mean of the k softmaxes."""
    return torch.softmax(logits.float(), dim=2).mean(dim=0)


def moe_head(cfg: Config, in_features: int, num_classes: int) -> MoEHead:
    """The head of `cfg`: k = moe.experts gated experts, or one linear layer with modules.moe off."""
    return MoEHead(in_features, num_classes, cfg.experts, gated=cfg.modules.moe)
