"""``arm``: the Amend Representation Module (Shi et al., ref. 51) on ResNet-18's feature map.

The 512x7x7 map is rearranged by PixelShuffle(16) into 2x112x112; one shared 32x32 / stride-8
"de-albino" convolution is applied to each of the 2 channels (vectorised by folding channels into
the batch), giving 2x11x11; then BatchNorm, and the affinity term: the mean over channels plus
alpha times the mean over the batch. The 121-d result is the feature f of the MoE head.

As in ARM, alpha is a learnable scalar; ``model.arm_alpha`` is its initial value. One change: in
eval mode the batch mean is a running average kept during training (like BatchNorm's statistics),
so a test prediction does not depend on which other images share its evaluation batch (that
would make results change with ``train.eval_batch_size`` and with the number of DDP ranks).
"""

from __future__ import annotations

import torch
from torch import nn

from sspa_ray.config import Config
from sspa_ray.errors import ConfigError
from sspa_ray.model import register
from sspa_ray.model.resnet import load_pretrained, resnet18_trunk

MAP_SIDE = 7  # ResNet-18 at 224 px
SHUFFLE = 16
KERNEL, STRIDE = 32, 8
OUT_SIDE = (MAP_SIDE * SHUFFLE - KERNEL) // STRIDE + 1  # 11


class AmendRepresentation(nn.Module):
    def __init__(self, channels: int = 512 // SHUFFLE**2, alpha: float = 1.0, momentum: float = 0.1):
        super().__init__()
        self.channels = channels
        self.momentum = momentum
        self.shuffle = nn.PixelShuffle(SHUFFLE)
        self.de_albino = nn.Conv2d(1, 1, KERNEL, stride=STRIDE, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.register_buffer("running_batch_mean", torch.zeros(OUT_SIDE, OUT_SIDE))

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        if fmap.shape[-2:] != (MAP_SIDE, MAP_SIDE):
            raise ConfigError(
                f"model.backbone=arm needs a {MAP_SIDE}x{MAP_SIDE} ResNet-18 map (224 px input) but got "
                f"{tuple(fmap.shape[-2:])}; set data.image_size=224"
            )
        x = self.shuffle(fmap)  # [B, 2, 112, 112]
        b = x.shape[0]
        x = self.de_albino(x.reshape(b * self.channels, 1, *x.shape[-2:]))
        x = self.bn(x.view(b, self.channels, OUT_SIDE, OUT_SIDE))
        if self.training:
            batch_mean = x.mean(dim=(0, 1))
            with torch.no_grad():
                self.running_batch_mean.lerp_(batch_mean.detach().to(self.running_batch_mean.dtype), self.momentum)
        else:
            batch_mean = self.running_batch_mean
        x = x.mean(dim=1) + self.alpha * batch_mean
        return x.flatten(1)


@register("arm")
def arm(cfg: Config) -> tuple[nn.Module, int]:
    if cfg.data.image_size != 224:
        raise ConfigError(
            f"model.backbone=arm needs data.image_size=224 (its de-albino conv expects ResNet-18's 7x7 map); "
            f"got data.image_size={cfg.data.image_size}"
        )
    trunk = resnet18_trunk()
    if cfg.model.pretrained:
        load_pretrained(trunk, cfg.model.pretrained)
    features = nn.Sequential(*list(trunk.children())[:-2])  # up to layer4: [B, 512, 7, 7]
    return nn.Sequential(features, AmendRepresentation(alpha=cfg.model.arm_alpha)), OUT_SIDE * OUT_SIDE
