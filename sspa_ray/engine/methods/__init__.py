"""The joint-training methods, one file each, behind one registry (as timm registers its models).

``build_method(cfg, data, device)`` returns the method of ``method.name``. A new method is one file
here with a ``@register_method`` class, its name in ``config.METHODS`` and its keys in their own
config section; nothing else in the engine changes.
"""

from __future__ import annotations

from sspa_ray.engine.methods import scn, sspa_jt  # noqa: F401  (importing a method registers it)
from sspa_ray.engine.methods.base import METHODS, JointMethod, register_method


def build_method(cfg, data, device) -> JointMethod:
    return METHODS[cfg.method.name](cfg, data, device)


__all__ = ["METHODS", "JointMethod", "build_method", "register_method"]
