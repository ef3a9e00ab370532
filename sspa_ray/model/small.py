"""``small``: a compact CNN for CPU runs and tests (any input side >= 16 px)."""

from __future__ import annotations

from torch import nn

from sspa_ray.model import register

WIDTHS = (16, 32, 64, 128)


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


@register("small")
def small(cfg) -> tuple[nn.Module, int]:
    layers, cin = [], 3
    for i, width in enumerate(WIDTHS):
        layers.append(_conv_bn_relu(cin, width, stride=1 if i == 0 else 2))
        cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), cin
