"""Batched augmentation on the training device: random crop and horizontal flip, then
normalisation.

Input is a uint8 NHWC batch straight from the cache (already on the device); output is a float
NCHW batch normalised with the ImageNet mean and std. The random crop pads every side by
`padding` pixels of zeros and crops back to the original size at a per-sample offset; the crop is
one gather of whole image rows and the flip one batched select, so there is no per-sample Python
loop. All randomness comes from an explicit ``torch.Generator`` on the batch's device, which
makes runs reproducible.

``channels_last=True`` returns the normalised batch in channels_last memory, the layout a
channels_last model wants; otherwise it is contiguous NCHW.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@functools.lru_cache(maxsize=8)
def _scale_shift(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # (x / 255 - mean) / std == x * scale + shift; built once per device (no per-batch copy).
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (1.0 / (255.0 * std)).to(device), (-mean / std).to(device)


def normalize(images: torch.Tensor, *, channels_last: bool = False) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W], ImageNet-normalised."""
    scale, shift = _scale_shift(images.device)
    b, h, w, c = images.shape
    layout = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((b, c, h, w), device=images.device, memory_format=layout)
    # Cast (and transpose) in one copy into the final layout, then one in-place multiply-add.
    # For NCHW this is ~3x faster on the CPU than the arithmetic on the NHWC view, whose
    # innermost loop would run over just the 3 channels.
    out.copy_(images.permute(0, 3, 1, 2))
    return torch.addcmul(shift, out, scale, out=out)


def augment(
    images: torch.Tensor, generator: torch.Generator, padding: int, *, channels_last: bool = False
) -> torch.Tensor:
    """Random crop (zero padding `padding`) and horizontal flip of a uint8 NHWC batch, normalised."""
    b, h, w, c = images.shape
    device = images.device
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator, device=device)
    flip = torch.randint(0, 2, (b, 1), generator=generator, device=device).bool()
    padded = F.pad(images, (0, 0, padding, padding, padding, padding)) if padding else images
    # Each padded row as its 2 * padding + 1 windows of w pixels (a view, no copy): the crop picks
    # one window per output row, copying rows of w * c contiguous bytes rather than single pixels
    # (~4x faster on the CPU than one gather of every pixel).
    windows = padded.flatten(2).unfold(2, w * c, c)  # [b, h + 2p, 2p + 1, w * c]
    rows = offsets[:, :1] + torch.arange(h, device=device)  # [b, h], in padded coordinates
    cropped = windows[torch.arange(b, device=device)[:, None], rows, offsets[:, 1:]].view(b, h, w, c)
    cropped = torch.where(flip[:, :, None, None], cropped.flip(2), cropped)
    return normalize(cropped, channels_last=channels_last)
