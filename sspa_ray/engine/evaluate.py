"""The per-epoch evaluation: predicted classes of the whole test split, shared among the ranks."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.distributed as dist

from sspa_ray.data.augment import normalize
from sspa_ray.engine.images import DeviceImages


@torch.no_grad()
def predict_classes(model: torch.nn.Module, images: DeviceImages, n: int, *, probabilities, batch_size: int, rank: int = 0,
                    world_size: int = 1, channels_last: bool = False,
                    autocast=contextlib.nullcontext) -> np.ndarray:
    """Argmax of ``probabilities(model(x))`` (the method's test-time prediction) for images 0..n; each rank
    predicts its share and gathers."""
    share = -(-n // world_size)
    start, stop = min(n, rank * share), min(n, (rank + 1) * share)
    model.eval()
    device = images.device
    predictions = [torch.empty(0, dtype=torch.long, device=device)]
    for a in range(start, stop, batch_size):
        b = min(stop, a + batch_size)
        x = normalize(images.range(a, b), channels_last=channels_last)
        with autocast():
            out = model(x)
        predictions.append(probabilities(out).argmax(dim=1))
    local = torch.cat(predictions)
    if world_size > 1:
        padded = torch.full((share,), -1, dtype=torch.long, device=device)
        padded[: local.numel()] = local
        gathered = [torch.empty_like(padded) for _ in range(world_size)]
        dist.all_gather(gathered, padded)
        local = torch.cat(gathered)[:n]
    return local.cpu().numpy()
