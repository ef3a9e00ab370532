"""Backbones and the MoE head behind one registry.

``build_model(cfg, head)`` returns a :class:`Classifier`: a backbone (``model.backbone``) that maps
images to a pooled feature vector f, followed by a head. The head is the joint-training method's
(engine/methods/); by default it is SSPA-JT's MoE head (``modules.moe``, ``moe.experts``), whose
forward returns per-expert logits of shape [k, B, C] and :func:`expert_probabilities` combines
them into the test-time prediction.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sspa_ray.config import Config
from sspa_ray.labels import NUM_CLASSES
from sspa_ray.model.moe import MoEHead, expert_probabilities, moe_head

_BACKBONES: dict[str, Callable] = {}


def register(name: str):
    """Decorator: ``@register("small")`` on a builder ``(cfg) -> (backbone, feature_dim)``."""

    def wrap(builder):
        _BACKBONES[name] = builder
        return builder

    return wrap


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor):
        """Images [B, 3, H, W] -> the head's output (the MoE head: per-expert logits [k, B, C])."""
        return self.head(self.backbone(x))


def build_backbone(cfg: Config) -> tuple[nn.Module, int]:
    """The backbone of ``model.backbone`` (with ``model.pretrained`` loaded) and its feature size."""
    # Importing the backbone modules fills the registry.
    from sspa_ray.model import arm, resnet, small  # noqa: F401

    return _BACKBONES[cfg.model.backbone](cfg)


def build_model(cfg: Config, head: Callable[[int, int], nn.Module] | None = None) -> Classifier:
    """The backbone, then ``head(feature_dim, num_classes)`` (default: the MoE head of `cfg`)."""
    backbone, dim = build_backbone(cfg)
    make_head = head or (lambda d, c: moe_head(cfg, d, c))
    return Classifier(backbone, make_head(dim, NUM_CLASSES))


__all__ = ["Classifier", "MoEHead", "build_backbone", "build_model", "expert_probabilities", "moe_head", "register"]
