"""Reading a spec file, the same way for search spaces, ablation presets, their claims and suites:
YAML syntax errors, duplicate keys and wrong shapes become one-line SpecErrors that name the file and
line (``file:line: ...``); and the checks every spec and the command line share (experiment names,
seed counts)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sspa_ray.errors import SpecError
from sspa_ray.suggest import did_you_mean

# An experiment's name is a folder name and Ray's run name.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class SpecFile:
    """A spec file's path and the 1-based line of each entry, by its path in the document:
    ``name``, ``space.pam.alpha``, ``rows[2]``, ``rows[2].moe.experts``, ``claims[0].better``."""

    path: Path
    lines: dict[str, int] = field(default_factory=dict)

    def at(self, where: str = "") -> str:
        """``file:line`` of the entry `where`, or of the nearest entry that holds it; the file alone
        when no line is known."""
        while where:
            if where in self.lines:
                return f"{self.path}:{self.lines[where]}"
            where = where[:max(where.rfind("."), where.rfind("["), 0)]
        return str(self.path)

    def error(self, where: str, message: str) -> SpecError:
        """A SpecError at the line of `where`; `message` says what is wrong and how to fix it."""
        return SpecError(f"{self.at(where)}: {message}")


def read_spec(path: Path) -> tuple[dict[str, Any], SpecFile]:
    """The top-level mapping of a YAML file and where its entries are, or a SpecError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file; give an existing YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read it ({exc}); give a readable UTF-8 YAML file") from None
    return parse_spec(text, path)


def parse_spec(text: str, path: Path) -> tuple[dict[str, Any], SpecFile]:
    """The top-level mapping of YAML `text` read from `path`, and where its entries are."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}: invalid YAML ({problem}); fix the syntax on that line") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    # The node tree (composed, no objects built; the text already loaded safely) has the lines, and
    # the duplicate keys that safe_load silently collapses into the last one.
    lines: dict[str, int] = {}
    _walk(yaml.compose(text, Loader=yaml.SafeLoader), "", path, lines)
    return data, SpecFile(path, lines)


def _walk(node: yaml.Node, prefix: str, path: Path, lines: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            name = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            if name in seen:
                raise SpecError(f"{path}:{key_node.start_mark.line + 1}: {name}: duplicate key; keep one entry")
            seen.add(name)
            lines[name] = key_node.start_mark.line + 1
            _walk(value_node, name, path, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[f"{prefix}[{i}]"] = item.start_mark.line + 1
            _walk(item, f"{prefix}[{i}]", path, lines)


def check_known(spec: SpecFile, prefix: str, keys: Iterable[str], known: Iterable[str], *, at: str | None = None) -> None:
    """Reject keys that are not in `known`, suggesting the nearest one. The message shows
    ``prefix + key``; the line is that of the entry `at`, or by default of the key itself."""
    known = list(known)
    for key in keys:
        if key not in known:
            hint = did_you_mean(key, known, otherwise="allowed: " + ", ".join(known))
            raise spec.error(at or f"{prefix}{key}", f"unknown key '{prefix}{key}': {hint}")


def name_problem(name: Any) -> str | None:
    """Why `name` cannot name an experiment, or None when it can."""
    if isinstance(name, str) and NAME_PATTERN.match(name):
        return None
    return f"{name!r} is not a usable experiment name: use letters, digits, '.', '_' or '-'"


def check_seeds(seeds: Any) -> int:
    """A number of seeds (--seeds, a preset's `seeds`), or a SpecError."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise SpecError(f"--seeds {seeds!r} is invalid: give a whole number >= 1")
    return seeds
