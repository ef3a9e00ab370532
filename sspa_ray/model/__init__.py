"""Backbones and the MoE head behind one registry.

``build_model(cfg, head)`` returns a :class:`Classifier`: a backbone (``model.backbone``) that maps
images to a pooled feature vector f, followed by a head. The head is the joint-training method's
(engine/methods/); by default it is SSPA-JT's MoE head (``modules.moe``, ``moe.experts``), whose
forward returns per-expert logits of shape [k, B, C] and :func:`expert_probabilities` combines
them into the test-time prediction. A backbone is one file here with a ``@register`` builder and
its name in ``config.BACKBONES``; importing this package fails, naming the file to add, while a
declared name has no builder (``registry.Registry.check``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sspa_ray.config import BACKBONES, Config
from sspa_ray.labels import NUM_CLASSES
from sspa_ray.model.moe import MoEHead, expert_probabilities, moe_head
from sspa_ray.registry import Registry

# model.backbone -> its builder, for the names config.BACKBONES declares (registry.py checks both ways).
_BUILDERS: Registry[Callable] = Registry(
    "model.backbone", BACKBONES, "BACKBONES",
    add="sspa_ray/model/{name}.py with a @register('{name}') builder, imported at the end of sspa_ray/model/__init__.py")


def register(name: str):
    """Decorator: ``@register("small")`` on a builder ``(cfg) -> (backbone, feature_dim)``."""

    def wrap(builder):
        return _BUILDERS.register(name, builder)

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
    return _BUILDERS[cfg.model.backbone](cfg)


def build_model(cfg: Config, head: Callable[[int, int], nn.Module] | None = None) -> Classifier:
    """The backbone, then ``head(feature_dim, num_classes)`` (default: the MoE head of `cfg`)."""
    backbone, dim = build_backbone(cfg)
    make_head = head or (lambda d, c: moe_head(cfg, d, c))
    return Classifier(backbone, make_head(dim, NUM_CLASSES))


# Importing the backbone files fills the registry; they import `register` from here, so they come last.
from sspa_ray.model import arm, resnet, small  # noqa: E402, F401

_BUILDERS.check()

__all__ = ["Classifier", "MoEHead", "build_backbone", "build_model", "expert_probabilities", "moe_head", "register"]
