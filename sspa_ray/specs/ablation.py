"""Ablation presets: one YAML file per paper table, expanded into trials.

A preset reads like the table it produces::

    name: modules
    title: Contribution of each module (Table 5)
    layout: modules            # modules | grid | ratio | list: how the report lays the table out
    metrics: [accuracy, macro_precision, macro_recall, macro_f1]
    rows:                      # one table row each; keys not named keep their defaults;
                               # an optional `label:` names the row (layout list)
      - {modules.ssm: false, modules.fix_target: false, modules.moe: false, modules.pam: false}
    across: {model.backbone: [resnet18, arm]}   # every row runs for every combination
    only_for: {model.backbone: [rafdb, caers]}  # where the preset sets a key; elsewhere it keeps
                                                # the target's default
    fixed: {data.aux_ratio: 0.1}
    seeds: 1
    baseline: 0                # the row the significance test compares against
    claims:                    # what the paper's table claims, checked after every run (specs/claims.py)
      - {claim: SSM + fixed D_T beats SSM alone, metrics: [accuracy], better: 2, than: 1}
    grid: [pam.beta, pam.alpha]   # layout grid only: the table's row key, then its column key
    reference:                 # the paper's numbers in percent: per target, per across
                               # combination, one entry per row (a list of `metrics`, or null)
      metrics: [accuracy, macro_precision, macro_recall, macro_f1]
      rafdb: {model.backbone=resnet18: [[85.06, 78.36, 75.93, 76.92], ...], ...}

Precedence inside one trial: target defaults < ``fixed`` < the row < the ``across`` combination
< ``train.seed`` < ``--set``. Trials whose configurations coincide after ``--set`` collapse into one.
"""

from __future__ import annotations

import importlib.resources
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sspa_ray.config import MODULES, TARGETS, coerce, make_config
from sspa_ray.errors import ConfigError, SpecError
from sspa_ray.outputs import METRICS
from sspa_ray.specs._yaml import SpecFile, check_known, check_seeds, read_spec
from sspa_ray.specs.claims import Claim, parse_claims
from sspa_ray.specs.layout import Layout

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

ROW_LABEL = "label"
# ablations/ installs under this name (pyproject.toml), in a checkout and in a wheel alike.
PRESETS_PACKAGE = "sspa_ray.presets"
TOP_KEYS = (
    "name", "title", "layout", "metrics", "rows", "across", "only_for", "fixed", "seeds",
    "baseline", "grid", "reference", "claims",
)
# The target comes from --target and seeds from `seeds`/--seeds; a preset setting them would
# silently fight the command line.
_RESERVED = {
    "data.target": "the target comes from --target",
    "train.seed": "seeds come from `seeds:` or --seeds (base seed: --set train.seed=N)",
}

Combo = tuple[tuple[str, Any], ...]
# How the paper names the module toggles (Table 5's columns).
MODULE_TITLES = {key: title for key, (_short, title) in MODULES.items()}


@dataclass
class TrialSpec:
    row: int                  # index into spec.rows; -1 in a suite, where `feeds` names the rows
    overrides: dict           # flat dotted keys, ready for make_config(target, overrides)
    feeds: list[tuple[str, int]] = field(default_factory=list)   # suite only: (table, row) it fills


@dataclass
class Reference:
    """The paper's reported numbers (percent) for the preset's rows, per target and combination."""

    metrics: tuple[str, ...] = ()
    source: str = ""
    values: dict[str, dict[Combo, list[dict[str, float | None] | None]]] = field(default_factory=dict)

    def lookup(self, target: str, combo: Mapping[str, Any], row: int) -> dict[str, float | None] | None:
        per_combo = self.values.get(target, {}).get(_combo_key(combo))
        if per_combo is None or not 0 <= row < len(per_combo):
            return None
        return per_combo[row]


@dataclass
class AblationSpec:
    name: str
    title: str
    layout: Layout
    metrics: tuple[str, ...]
    rows: list[dict[str, Any]]
    labels: list[str | None]
    across: dict[str, list[Any]]
    only_for: dict[str, tuple[str, ...]]
    fixed: dict[str, Any]
    seeds: int
    baseline: int
    grid: tuple[str, str] | None
    reference: Reference
    source: SpecFile                                     # the file, and its lines for errors
    claims: list[Claim] = field(default_factory=list)   # what the paper's table claims (specs/claims.py)

    @property
    def path(self) -> Path:
        return self.source.path

    def text(self) -> str:
        """The preset's YAML as written, for the experiment's spec.yaml."""
        return self.path.read_text(encoding="utf-8")

    # ---- what the table shows -----------------------------------------------------------
    def row_keys(self) -> list[str]:
        """Keys set by any row, in order of first appearance."""
        return list(dict.fromkeys(key for row in self.rows for key in row))

    def row_name(self, index: int) -> str:
        """A row as the paper names it: its label, 'SSM + D_T fixed + MoE', 'moe.experts=3', or 'none'."""
        if self.labels[index]:
            return self.labels[index]
        row = self.rows[index]
        on = [MODULE_TITLES.get(k, k) for k, v in row.items() if v is True]
        others = [f"{k}={_as_written(v)}" for k, v in row.items() if not isinstance(v, bool)]
        return ", ".join(([" + ".join(on)] if on else []) + others) or "none"

    def describe_row(self, index: int) -> str:
        """A row as written in the YAML, for error messages."""
        if self.labels[index]:
            return repr(self.labels[index])
        return "{" + ", ".join(f"{k}: {_as_written(v)}" for k, v in self.rows[index].items()) + "}"

    # ---- expansion ----------------------------------------------------------------------
    def applies(self, key: str, target: str) -> bool:
        return target in self.only_for.get(key, TARGETS)

    def active_across(self, target: str) -> dict[str, list[Any]]:
        """The `across` keys this target runs (see `only_for`)."""
        return {key: values for key, values in self.across.items() if self.applies(key, target)}

    def trials(self, target: str, overrides: Mapping[str, Any] | None = None, seeds: int | None = None) -> list[TrialSpec]:
        """Every trial of this preset on `target`, validated; `overrides` are the --set values."""
        sets = dict(overrides or {})
        target = coerce("data.target", sets.pop("data.target", target))
        base_seed = coerce("train.seed", sets.pop("train.seed", 0))
        n_seeds = check_seeds(self.seeds if seeds is None else seeds)
        fixed = {k: v for k, v in self.fixed.items() if self.applies(k, target)}
        across = self.active_across(target)
        combos = [dict(zip(across, values, strict=False)) for values in itertools.product(*across.values())]

        trials, seen = [], set()
        for combo in combos:
            for index, row in enumerate(self.rows):
                row_values = {k: v for k, v in row.items() if self.applies(k, target)}
                for seed in range(base_seed, base_seed + n_seeds):
                    layer = {**fixed, **row_values, **combo, "train.seed": seed, **sets}
                    identity = tuple(self._config(target, layer, index, combo, overrides).to_flat().items())
                    if identity in seen:
                        continue
                    seen.add(identity)
                    trials.append(TrialSpec(row=index, overrides=layer))
        return trials

    def paper_config(self, target: str, row: int, combo: Mapping[str, Any]) -> dict[str, Any]:
        """The flat config of `row` as the preset defines it (no --set): what its reference numbers ran."""
        fixed = {k: v for k, v in self.fixed.items() if self.applies(k, target)}
        row_values = {k: v for k, v in self.rows[row].items() if self.applies(k, target)}
        return make_config(target, {**fixed, **row_values, **combo}).to_flat()

    def _config(self, target: str, layer: dict, index: int, combo: dict, sets: Mapping[str, Any] | None):
        try:
            return make_config(target, layer)
        except ConfigError as exc:
            where = f"rows[{index}] {self.describe_row(index)}"
            if combo:
                where += " with " + ", ".join(f"{k}={_as_written(v)}" for k, v in combo.items())
            if sets:
                where += " and --set " + " ".join(f"{k}={_as_written(v)}" for k, v in sets.items())
            raise self.source.error(f"rows[{index}]", f"{where} on target {target}: {exc}") from None


def _as_written(value: Any) -> str:
    # Floats as Python writes them (pam.alpha=1.0), unlike config.value_text (pam.alpha=1): row
    # names are in every table and claim already rendered, and a refactor changes no output.
    return str(value).lower() if isinstance(value, bool) or value is None else str(value)


# ---- finding presets --------------------------------------------------------------------------

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


def load_ablation(name_or_path: str | Path) -> AblationSpec:
    return parse_ablation(*read_spec(resolve_preset(name_or_path)))


# ---- validation -----------------------------------------------------------------------------

def parse_ablation(data: Mapping[str, Any], src: SpecFile) -> AblationSpec:
    """Validate a loaded YAML mapping; every problem is a one-line SpecError naming the file, line and key."""
    check_known(src, "", data, TOP_KEYS)
    for key in ("name", "title", "rows"):
        if key not in data:
            raise src.error("", f"missing required key '{key}'")
    name = _text(src, "name", data["name"])
    title = _text(src, "title", data["title"])
    check_known(src, "layout: ", [data.get("layout", "list")], [layout.value for layout in Layout], at="layout")
    layout = Layout(data.get("layout", "list"))
    metrics = _metrics(src, "metrics", data.get("metrics", list(METRICS)))

    rows, labels = _rows(src, data["rows"])
    fixed = _values(src, "fixed", data.get("fixed") or {})
    across = _across(src, data.get("across") or {})
    for key in across:
        if any(key in row for row in rows) or key in fixed:
            raise src.error(f"across.{key}", f"across.{key} is also set in rows or fixed; set it in one place")
    only_for = _only_for(src, data.get("only_for") or {}, set(fixed) | set(across) | {k for r in rows for k in r})
    seeds = _count(src, "seeds", data.get("seeds", 1), lo=1)
    baseline = _count(src, "baseline", data.get("baseline", 0), lo=0)
    if baseline >= len(rows):
        raise src.error("baseline", f"baseline {baseline} is not a row index; choose 0..{len(rows) - 1}")
    grid = layout.check(src, rows, data.get("grid"))
    reference = _reference(src, data.get("reference") or {}, metrics, across, len(rows))
    claims = parse_claims(src, data.get("claims"), rows=len(rows), labels=labels, metrics=metrics)
    return AblationSpec(
        name=name, title=title, layout=layout, metrics=metrics, rows=rows, labels=labels,
        across=across, only_for=only_for, fixed=fixed, seeds=seeds, baseline=baseline, grid=grid,
        reference=reference, source=src, claims=claims,
    )


def _text(src: SpecFile, key, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise src.error(key, f"'{key}' must be a non-empty string")
    return value.strip()


def _count(src: SpecFile, key, value, *, lo) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise src.error(key, f"'{key}: {value!r}' is invalid: expected a whole number >= {lo}")
    return value


def _metrics(src: SpecFile, where, value) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise src.error(where, f"'{where}' must be a non-empty list of {', '.join(METRICS)}")
    check_known(src, f"{where}: ", value, METRICS, at=where)
    if len(set(value)) != len(value):
        raise src.error(where, f"'{where}' lists a metric twice; list each once")
    return tuple(value)


def _value(src: SpecFile, where, key, value, at=None):
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


def _values(src: SpecFile, where, mapping) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise src.error(where, f"'{where}' must be a mapping of dotted keys to values")
    return {key: _value(src, f"{where}.", key, value) for key, value in mapping.items()}


def _rows(src: SpecFile, raw) -> tuple[list[dict[str, Any]], list[str | None]]:
    if not isinstance(raw, list) or not raw:
        raise src.error("rows", "'rows' must be a non-empty list of mappings, one per table row")
    rows, labels = [], []
    for i, row in enumerate(raw):
        if not isinstance(row, dict):
            raise src.error(f"rows[{i}]", f"rows[{i}] must be a mapping such as {{moe.experts: 3}}")
        label = row.get(ROW_LABEL)
        if label is not None and not isinstance(label, str):
            raise src.error(f"rows[{i}].{ROW_LABEL}", f"rows[{i}].label must be a string")
        values = _values(src, f"rows[{i}]", {k: v for k, v in row.items() if k != ROW_LABEL})
        if values in rows:
            raise src.error(f"rows[{i}]", f"rows[{i}] repeats rows[{rows.index(values)}]; remove one")
        rows.append(values)
        labels.append(label)
    return rows, labels


def _across(src: SpecFile, raw) -> dict[str, list[Any]]:
    if not isinstance(raw, dict):
        raise src.error("across", "'across' must map dotted keys to lists of values")
    across = {}
    for key, values in raw.items():
        if not isinstance(values, list) or not values:
            raise src.error(f"across.{key}", f"across.{key} must be a non-empty list of values")
        coerced = [_value(src, "across.", key, v, at=f"across.{key}[{i}]") for i, v in enumerate(values)]
        if len(set(coerced)) != len(coerced):
            raise src.error(f"across.{key}", f"across.{key} lists a value twice; list each once")
        across[key] = coerced
    return across


def _only_for(src: SpecFile, raw, used: set[str]) -> dict[str, tuple[str, ...]]:
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


def _combo_key(combo: Mapping[str, Any]) -> Combo:
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
        combo[key] = _value(src, f"{where}: ", key, value.strip(), at=where)
        if combo[key] not in across[key]:
            raise src.error(where, f"{where}: {key}={combo[key]} is not one of across.{key}")
    if set(combo) != set(across):
        raise src.error(where, f"{where}: '{text}' must give a value for each of {', '.join(across)}")
    return _combo_key(combo)


def _reference(src: SpecFile, raw, metrics, across, n_rows) -> Reference:
    if not isinstance(raw, dict):
        raise src.error("reference", "'reference' must be a mapping")
    check_known(src, "reference.", raw, ("metrics", "source", *TARGETS))
    ref_metrics = _metrics(src, "reference.metrics", raw.get("metrics", list(metrics)))
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
