"""Trial names and identities: the readable name of a trial and its folder, and the key that finds
an ablation's trial from the config Tune hands back."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sspa_ray.config import MODULES, Config, value_text

METHOD_KEY = "method.name"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+=-]")


def trial_name(experiment: str, cfg: Config, varied: list[str], *, seed: bool = True) -> str:
    """A short readable name from the values that tell trials apart, e.g. ``modules-ssm+fix+pam-s0``.

    Module toggles read as the modules that are on (``none`` when all are off), another method as
    its name (``strategies-scn-...``), other `varied` keys as ``experts=5``, the seed as ``s0``;
    without `seed` it names the trial's group of seeds.
    """
    keys = [k for k in varied if k != "train.seed"]
    others = [k for k in keys if k not in MODULES and k != METHOD_KEY]
    leaves = [k.rsplit(".", 1)[-1] for k in others]
    parts = [experiment]
    if len(others) < len(keys):  # a module toggle or the method varies: name the method, or its modules that are on
        on = "+".join(short for key, (short, _title) in MODULES.items() if cfg.get(key)) or "none"
        parts.append(on if cfg.method.name == "sspa_jt" else cfg.method.name)
    for key, leaf in zip(others, leaves, strict=True):
        parts.append(f"{leaf if leaves.count(leaf) == 1 else key}={value_text(cfg.get(key))}")
    if seed:
        parts.append(f"s{cfg.train.seed}")
    return _UNSAFE.sub("_", "-".join(parts))


def identity(config: Mapping[str, Any]) -> str:
    """The key of a flat config: equal configs, whatever their order, have equal keys."""
    return json.dumps(dict(config), sort_keys=True, default=str)


