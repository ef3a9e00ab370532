"""Finding ablation presets: a bare name is ablations/NAME.yaml, installed as the package
``sspa_ray.presets`` (pyproject.toml), found through importlib.resources in a checkout and in a wheel
alike; anything that looks like a path is that file."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import TYPE_CHECKING

from sspa_ray.errors import SpecError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

# ablations/ installs under this name (pyproject.toml), in a checkout and in a wheel alike.
PRESETS_PACKAGE = "sspa_ray.presets"


def preset_files() -> dict[str, Traversable]:
    """The installed presets by name: ablations/ installs as the package ``sspa_ray.presets``."""
    folder = importlib.resources.files(PRESETS_PACKAGE)
    return {f.name.removesuffix(".yaml"): f for f in folder.iterdir() if f.name.endswith(".yaml")}


def preset_names() -> list[str]:
    return sorted(preset_files())


def resolve_preset(name_or_path: str | Path) -> Path | Traversable:
    """A bare name picks ablations/NAME.yaml; anything that looks like a path is that path."""
    text = str(name_or_path)
    looks_like_path = "/" in text or "\\" in text or text.endswith((".yaml", ".yml"))
    if looks_like_path or Path(text).is_file():
        path = Path(text)
        if not path.is_file():
            raise SpecError(f"ablation file {text} does not exist; give a YAML file or a preset name")
        return path
    presets = preset_files()
    if text in presets:
        return presets[text]
    names = ", ".join(sorted(presets)) or "none found"
    raise SpecError(f"unknown ablation preset '{text}': choose one of {names}, or give a YAML path")

