"""``resnet18``: torchvision's ResNet-18 without its classifier, and checkpoint loading.

``model.pretrained`` names a local file (an MS-Celeb-1M face model or an ImageNet model). It may
be ``{"state_dict": {...}}`` or a bare state dict; ``module.`` prefixes (DataParallel) are
stripped and the ``fc`` classifier is dropped. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
import pickle

import torch
import torchvision
from torch import nn

from sspa_ray.errors import ConfigError, DataError
from sspa_ray.model import register


def resnet18_trunk() -> nn.Module:
    """ResNet-18 with ``fc`` replaced by the identity: images -> 512-d pooled features."""
    net = torchvision.models.resnet18(weights=None)
    net.fc = nn.Identity()
    return net


def load_pretrained(net: nn.Module, path: str, *, arch: str = "ResNet-18") -> None:
    """Load an `arch` checkpoint from `path` into `net` (a backbone without ``fc``)."""
    if not os.path.isfile(path):
        raise ConfigError(f"model.pretrained={path!r}: no such file; give the path of a {arch} checkpoint or none")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"model.pretrained={path!r} is not a readable torch checkpoint ({first[:120]})") from None
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"model.pretrained={path!r} holds no state dict of tensors (bare, or under 'state_dict')")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        names = (missing or unexpected)[:3]
        kind = "lacks" if missing else "has unexpected"
        raise DataError(f"model.pretrained={path!r} is not a {arch} checkpoint: it {kind} keys such as {names}")


@register("resnet18")
def resnet18(cfg) -> tuple[nn.Module, int]:
    net = resnet18_trunk()
    if cfg.model.pretrained:
        load_pretrained(net, cfg.model.pretrained)
    return net, 512
