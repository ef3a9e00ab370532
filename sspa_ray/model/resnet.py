"""``resnet18``: torchvision's ResNet-18 without its classifier, and checkpoint loading.

``model.pretrained`` names a local file (an MS-Celeb-1M face model or an ImageNet model). Only the
trunk (conv1, bn1, layer1-4) is taken from it; whatever sits on top (a classifier ``fc`` of any
size, DREAM's 512->256 ``feature`` layer, an optimiser state) is skipped. Nothing is downloaded.
"""

from __future__ import annotations

import os
import pickle

import torch
from torch import nn

from sspa_ray.config import Config
from sspa_ray.errors import ConfigError, DataError
from sspa_ray.model import register

# Where training scripts nest the weights inside a checkpoint dict, most common first.
_NESTED = ("state_dict", "model_state_dict", "model", "net", "network", "backbone")
# A trunk weight every ResNet-18 layout holds, used to find the checkpoint's key prefix.
_ANCHOR = "layer1.0.conv1.weight"
# SCN / ARM keep the trunk as ``features = nn.Sequential(*resnet.children())``: index -> name.
_SEQUENTIAL = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
_SEQUENTIAL_ANCHOR = "4.0.conv1.weight"


def resnet18_trunk() -> nn.Module:
    """ResNet-18 with ``fc`` replaced by the identity: images -> 512-d pooled features."""
    # Imported here, not at the top: importing sspa_ray.model imports every backbone file (to check its
    # registry), and torchvision's 1.7 s (measured on the shared 2-core machine) would then land on every
    # process that imports the engine, the driver of `sspa-ray ablate` included, ResNet or not.
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    net.fc = nn.Identity()
    return net


def load_pretrained(net: nn.Module, path: str, *, arch: str = "ResNet-18") -> list[str]:
    """Load the `arch` trunk of the checkpoint at `path` into `net`; returns the skipped keys.

    Accepted: a bare state dict or one nested under ``state_dict`` / ``model`` / ...; any key
    prefix (DataParallel's ``module.``, ``backbone.``, ...); torchvision/timm names or SCN/ARM's
    ``features.N``; missing ``num_batches_tracked`` (older PyTorch; the trunk keeps its own).
    Missing or mis-shaped trunk weights are a one-line DataError that names them.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"model.pretrained={path!r}: no such file; give the path of a {arch} checkpoint or none")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"model.pretrained={path!r} is not a readable torch checkpoint ({first[:120]})") from None
    state = _tensors(blob)
    if not state:
        raise DataError(f"model.pretrained={path!r} holds no state dict of tensors (bare, or under one of "
                        f"{', '.join(_NESTED)})")
    want = net.state_dict()
    trunk, skipped = _trunk_names(state, want)
    missing = [k for k in want if k not in trunk and not k.endswith("num_batches_tracked")]
    misshaped = [f"{k} {_shape(trunk[k])} (want {_shape(want[k])})" for k in want
                 if k in trunk and trunk[k].shape != want[k].shape]
    if missing or misshaped:
        problems = (f"lacks {len(missing)} trunk weights such as {missing[:3]}" if missing else "") + \
                   ("; " if missing and misshaped else "") + \
                   (f"has mis-shaped weights {misshaped[:3]}" if misshaped else "")
        raise DataError(f"model.pretrained={path!r} is not a {arch} checkpoint: it {problems}")
    net.load_state_dict({k: trunk.get(k, v) for k, v in want.items()})
    return skipped


def _tensors(blob) -> dict[str, torch.Tensor]:
    """The tensors of the state dict in `blob`, found bare or under one of the _NESTED keys."""
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if not isinstance(blob, dict):
            return {}
        tensors = {k: v for k, v in blob.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
        blob = next((blob[k] for k in _NESTED if isinstance(blob.get(k), dict)), None)
    return {}


def _trunk_names(state: dict[str, torch.Tensor], wanted) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The checkpoint's trunk weights under torchvision's names, and the keys skipped."""
    # Without a ResNet-18 anchor (another backbone's checkpoint) keys match as they are, less
    # DataParallel's prefix.
    prefix = "module." if all(k.startswith("module.") for k in state) else ""
    sequential = False
    for key in state:
        if key == _ANCHOR or key.endswith("." + _ANCHOR):
            prefix, sequential = key[: -len(_ANCHOR)], False
            break
        if key == _SEQUENTIAL_ANCHOR or key.endswith("." + _SEQUENTIAL_ANCHOR):
            prefix, sequential = key[: -len(_SEQUENTIAL_ANCHOR)], True
    trunk: dict[str, torch.Tensor] = {}
    skipped = []
    for key, value in state.items():
        name = key[len(prefix):] if key.startswith(prefix) else ""
        if sequential:
            head, _, rest = name.partition(".")
            name = f"{_SEQUENTIAL[head]}.{rest}" if head in _SEQUENTIAL else ""
        if name in wanted:
            trunk[name] = value
        else:
            skipped.append(key)
    return trunk, skipped


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "scalar"


@register("resnet18")
def resnet18(cfg: Config) -> tuple[nn.Module, int]:
    net = resnet18_trunk()
    if cfg.model.pretrained:
        load_pretrained(net, cfg.model.pretrained)
    return net, 512
