"""``small``: a compact CNN for CPU runs and tests (any input side >= 16 px).

Four 3x3 conv-BN-ReLU stages of 16/32/64/128 channels with 2x2 max-pooling between them, then
global average pooling: about 0.1 M parameters and 4 M multiply-adds per 32 px image. Pooling
after stride-1 convolutions (rather than strided convolutions) keeps the few-pixel details that
separate expressions; on the synthetic benchmark it trains markedly faster for the same cost.
"""

from __future__ import annotations

from torch import nn

from sspa_ray.config import Config
from sspa_ray.model import register
from sspa_ray.model.resnet import load_pretrained

WIDTHS = (16, 32, 64, 128)


@register("small")
def small(cfg: Config) -> tuple[nn.Module, int]:
    layers, cin = [], 3
    for i, width in enumerate(WIDTHS):
        if i:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    net = nn.Sequential(*layers)
    if cfg.model.pretrained:
        load_pretrained(net, cfg.model.pretrained, arch="small")
    return net, cin
