"""Reading a spec file: YAML syntax errors and wrong shapes become one-line SpecErrors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml

from sspa_ray.errors import SpecError
from sspa_ray.suggest import did_you_mean


def read_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file, or a SpecError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file; give an existing YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read it ({exc}); give a readable UTF-8 YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}: invalid YAML ({problem}); fix the syntax on that line") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def check_known(path: Path, where: str, keys: Iterable[str], known: Iterable[str]) -> None:
    """Reject keys that are not in `known`, suggesting the nearest one."""
    known = list(known)
    for key in keys:
        if key not in known:
            hint = did_you_mean(key, known, otherwise="allowed: " + ", ".join(known))
            raise SpecError(f"{path}: unknown key '{where}{key}': {hint}")
