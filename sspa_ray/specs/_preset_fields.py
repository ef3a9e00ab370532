"""The checks of an ablation preset's entries (ablation.py's parse_ablation and reference.py call
them): names, counts, metrics, dotted-key values, rows, ``across`` and ``only_for``; each problem is a
one-line SpecError naming the file, line and entry."""

from __future__ import annotations

from typing import Any

from sspa_ray.config import TARGETS, coerce
from sspa_ray.errors import ConfigError
from sspa_ray.outputs import METRICS
from sspa_ray.specs._yaml import SpecFile, check_known

ROW_LABEL = "label"
# The target comes from --target and seeds from `seeds`/--seeds; a preset setting them would
# silently fight the command line.
_RESERVED = {
    "data.target": "the target comes from --target",
    "train.seed": "seeds come from `seeds:` or --seeds (base seed: --set train.seed=N)",
}


def check_text(src: SpecFile, key, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise src.error(key, f"'{key}' must be a non-empty string")
    return value.strip()


def check_count(src: SpecFile, key, value, *, lo) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise src.error(key, f"'{key}: {value!r}' is invalid: expected a whole number >= {lo}")
    return value


def check_metrics(src: SpecFile, where, value) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise src.error(where, f"'{where}' must be a non-empty list of {', '.join(METRICS)}")
    check_known(src, f"{where}: ", value, METRICS, at=where)
    if len(set(value)) != len(value):
        raise src.error(where, f"'{where}' lists a metric twice; list each once")
    return tuple(value)


def check_value(src: SpecFile, where, key, value, at=None):
    """A coerced value of `key`; `where` prefixes the key in messages, `at` is its entry (default where + key)."""
    at = at or f"{where}{key}"
    if not isinstance(key, str):
        raise src.error(at, f"{where}: key {key!r} is not a dotted config key such as pam.alpha")
    if key in _RESERVED:
        raise src.error(at, f"{where}{key} cannot be set in a preset: {_RESERVED[key]}")
    try:
        return coerce(key, value)
    except ConfigError as exc:
        raise src.error(at, f"{where}{key}: {exc}") from None


def check_values(src: SpecFile, where, mapping) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise src.error(where, f"'{where}' must be a mapping of dotted keys to values")
    return {key: check_value(src, f"{where}.", key, value) for key, value in mapping.items()}


def check_rows(src: SpecFile, raw) -> tuple[list[dict[str, Any]], list[str | None]]:
    if not isinstance(raw, list) or not raw:
        raise src.error("rows", "'rows' must be a non-empty list of mappings, one per table row")
    rows, labels = [], []
    for i, row in enumerate(raw):
        if not isinstance(row, dict):
            raise src.error(f"rows[{i}]", f"rows[{i}] must be a mapping such as {{moe.experts: 3}}")
        label = row.get(ROW_LABEL)
        if label is not None and not isinstance(label, str):
            raise src.error(f"rows[{i}].{ROW_LABEL}", f"rows[{i}].label must be a string")
        values = check_values(src, f"rows[{i}]", {k: v for k, v in row.items() if k != ROW_LABEL})
        if values in rows:
            raise src.error(f"rows[{i}]", f"rows[{i}] repeats rows[{rows.index(values)}]; remove one")
        rows.append(values)
        labels.append(label)
    return rows, labels


def check_across(src: SpecFile, raw) -> dict[str, list[Any]]:
    if not isinstance(raw, dict):
        raise src.error("across", "'across' must map dotted keys to lists of values")
    across = {}
    for key, values in raw.items():
        if not isinstance(values, list) or not values:
            raise src.error(f"across.{key}", f"across.{key} must be a non-empty list of values")
        coerced = [check_value(src, "across.", key, v, at=f"across.{key}[{i}]") for i, v in enumerate(values)]
        if len(set(coerced)) != len(coerced):
            raise src.error(f"across.{key}", f"across.{key} lists a value twice; list each once")
        across[key] = coerced
    return across


def check_only_for(src: SpecFile, raw, used: set[str]) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        raise src.error("only_for", "'only_for' must map dotted keys to lists of targets")
    out = {}
    for key, targets in raw.items():
        where = f"only_for.{key}"
        if key not in used:
            raise src.error(where, f"{where} names a key that no row, across or fixed sets; remove it")
        if not isinstance(targets, list) or not targets:
            raise src.error(where, f"{where} must be a non-empty list of targets ({', '.join(TARGETS)})")
        check_known(src, f"{where}: ", targets, TARGETS, at=where)
        out[key] = tuple(targets)
    return out

