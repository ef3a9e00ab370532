"""The paper's numbers beside an ablation preset's rows (its ``reference:`` block): per target, per
``across`` combination, one entry per row; how they are looked up and how the block is checked."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sspa_ray.config import TARGETS
from sspa_ray.specs._preset_fields import check_metrics, check_value
from sspa_ray.specs._yaml import SpecFile, check_known

Combo = tuple[tuple[str, Any], ...]


@dataclass
class Reference:
    """The paper's reported numbers (percent) for the preset's rows, per target and combination."""

    metrics: tuple[str, ...] = ()
    source: str = ""
    values: dict[str, dict[Combo, list[dict[str, float | None] | None]]] = field(default_factory=dict)

    def lookup(self, target: str, combo: Mapping[str, Any], row: int) -> dict[str, float | None] | None:
        per_combo = self.values.get(target, {}).get(combo_key(combo))
        if per_combo is None or not 0 <= row < len(per_combo):
            return None
        return per_combo[row]


def combo_key(combo: Mapping[str, Any]) -> Combo:
    return tuple(sorted(combo.items()))


def _parse_combo(src: SpecFile, where, text, across) -> Combo:
    if not across:
        raise src.error(where, f"{where}: this preset has no 'across', so give the rows' list directly")
    combo = {}
    for part in str(text).split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in across:
            raise src.error(
                where, f"{where}: '{text}' must name each across key as KEY=VALUE, "
                f"e.g. {', '.join(f'{k}={v[0]}' for k, v in across.items())}"
            )
        combo[key] = check_value(src, f"{where}: ", key, value.strip(), at=where)
        if combo[key] not in across[key]:
            raise src.error(where, f"{where}: {key}={combo[key]} is not one of across.{key}")
    if set(combo) != set(across):
        raise src.error(where, f"{where}: '{text}' must give a value for each of {', '.join(across)}")
    return combo_key(combo)


def parse_reference(src: SpecFile, raw, metrics, across, n_rows) -> Reference:
    if not isinstance(raw, dict):
        raise src.error("reference", "'reference' must be a mapping")
    check_known(src, "reference.", raw, ("metrics", "source", *TARGETS))
    ref_metrics = check_metrics(src, "reference.metrics", raw.get("metrics", list(metrics)))
    for metric in ref_metrics:
        if metric not in metrics:
            raise src.error("reference.metrics", f"reference.metrics lists {metric}, which 'metrics' does not; add it there")
    source = raw.get("source", "")
    values: dict[str, dict[Combo, list]] = {}
    for target in TARGETS:
        if target not in raw:
            continue
        block = raw[target]
        if not across:
            block = {"": block}
        elif not isinstance(block, dict):
            raise src.error(f"reference.{target}", f"reference.{target} must map each across combination (e.g. "
                            f"{next(iter(across))}={next(iter(across.values()))[0]}) to one entry per row")
        values[target] = {}
        for combo_text, entries in block.items():
            where = f"reference.{target}" + (f".{combo_text}" if across else "")
            combo = _parse_combo(src, where, combo_text, across) if across else ()
            values[target][combo] = _entries(src, where, entries, ref_metrics, n_rows)
    return Reference(metrics=ref_metrics, source=str(source), values=values)


def _entries(src: SpecFile, where, entries, metrics, n_rows):
    if not isinstance(entries, list) or len(entries) != n_rows:
        raise src.error(where, f"{where} must list one entry per row ({n_rows}); use null where the paper has none")
    out = []
    for i, entry in enumerate(entries):
        if entry is None:
            out.append(None)
            continue
        numbers = entry if isinstance(entry, list) else [entry]
        if len(numbers) != len(metrics):
            raise src.error(f"{where}[{i}]", f"{where}[{i}] must give {len(metrics)} numbers ({', '.join(metrics)})")
        for x in numbers:
            if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x)):
                raise src.error(f"{where}[{i}]", f"{where}[{i}]: {x!r} is not a number (percent) or null")
        out.append({m: (None if x is None else float(x)) for m, x in zip(metrics, numbers, strict=False)})
    return out
