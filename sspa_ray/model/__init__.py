"""Backbones and the MoE head behind one registry.

``build_model(cfg)`` returns a :class:`Classifier`: a backbone (``model.backbone``) that maps
images to a feature vector f, followed by the MoE head (``modules.moe``, ``moe.experts``). Its
forward returns per-expert logits of shape [k, B, C]; :func:`expert_probabilities` combines them
into the test-time prediction.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from sspa_ray.labels import NUM_CLASSES
from sspa_ray.model.moe import MoEHead, expert_probabilities

_BACKBONES: dict[str, Callable] = {}


def register(name: str):
    """Decorator: ``@register("small")`` on a builder ``(cfg) -> (backbone, feature_dim)``."""

    def wrap(builder):
        _BACKBONES[name] = builder
        return builder

    return wrap


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, feature_dim: int, experts: int, moe: bool, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = MoEHead(feature_dim, num_classes, experts, gated=moe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] -> per-expert logits [k, B, C]."""
        return self.head(self.backbone(x))


def build_backbone(cfg) -> tuple[nn.Module, int]:
    """The backbone of ``model.backbone`` (with ``model.pretrained`` loaded) and its feature size."""
    # Importing the backbone modules fills the registry.
    from sspa_ray.model import arm, resnet, small  # noqa: F401

    return _BACKBONES[cfg.model.backbone](cfg)


def build_model(cfg) -> Classifier:
    backbone, dim = build_backbone(cfg)
    return Classifier(backbone, dim, cfg.experts, cfg.modules.moe, NUM_CLASSES)


__all__ = ["Classifier", "MoEHead", "build_backbone", "build_model", "expert_probabilities", "register"]
