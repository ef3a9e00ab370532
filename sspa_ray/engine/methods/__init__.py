"""The joint-training methods, one file each, behind one registry (as timm registers its models).

``build_method(cfg, data, device)`` returns the method of ``method.name``. A new method is one file
here with a ``@register_method`` class, its name in ``config.METHODS`` and its keys in their own
config section; nothing else in the engine changes. Importing this package fails, naming the file
to add, while a name of ``config.METHODS`` has no class (``registry.Registry.check``).
"""

from __future__ import annotations

from sspa_ray.config import Config
from sspa_ray.engine.methods import dcjt, scn, sspa_jt  # noqa: F401  (importing a method registers it)
from sspa_ray.engine.methods.base import METHOD_CLASSES, JointMethod, register_method

METHOD_CLASSES.check()


def prepare_method(cfg: Config, data, model_cfg: Config, *, progress: bool = True) -> dict | None:
    """The setup of method.name that may train or read something, before the Trainer is built."""
    return METHOD_CLASSES[cfg.method.name].prepare(cfg, data, model_cfg, progress=progress)


def build_method(cfg: Config, data, device, prepared: dict | None = None) -> JointMethod:
    return METHOD_CLASSES[cfg.method.name](cfg, data, device, prepared)


__all__ = ["METHOD_CLASSES", "JointMethod", "build_method", "prepare_method", "register_method"]
