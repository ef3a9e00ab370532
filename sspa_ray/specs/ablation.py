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

This file holds a preset (AblationSpec), its expansion into trials and its parsing; the entries'
checks are in _preset_fields.py, the ``reference:`` block in reference.py, the claims in claims.py,
the layouts in layout.py, and where a preset is found in presets.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sspa_ray.config import MODULES, TARGETS, coerce
from sspa_ray.defaults import make_config
from sspa_ray.errors import ConfigError
from sspa_ray.outputs import METRICS
from sspa_ray.specs._preset_fields import (
    check_across,
    check_count,
    check_metrics,
    check_only_for,
    check_rows,
    check_text,
    check_values,
)
from sspa_ray.specs._yaml import SpecFile, check_known, check_seeds, read_spec
from sspa_ray.specs.claims import Claim, parse_claims
from sspa_ray.specs.layout import Layout
from sspa_ray.specs.presets import resolve_preset
from sspa_ray.specs.reference import Reference, parse_reference

TOP_KEYS = (
    "name", "title", "layout", "metrics", "rows", "across", "only_for", "fixed", "seeds",
    "baseline", "grid", "reference", "claims",
)
# How the paper names the module toggles (Table 5's columns).
MODULE_TITLES = {key: title for key, (_short, title) in MODULES.items()}


@dataclass
class TrialSpec:
    row: int                  # index into spec.rows; -1 in a suite, where `feeds` names the rows
    overrides: dict           # flat dotted keys, ready for make_config(target, overrides)
    feeds: list[tuple[str, int]] = field(default_factory=list)   # suite only: (table, row) it fills



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
        combos = [dict(zip(across, values, strict=True)) for values in itertools.product(*across.values())]

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


def load_ablation(name_or_path: str | Path) -> AblationSpec:
    return parse_ablation(*read_spec(resolve_preset(name_or_path)))


# ---- validation -----------------------------------------------------------------------------

def parse_ablation(data: Mapping[str, Any], src: SpecFile) -> AblationSpec:
    """Validate a loaded YAML mapping; every problem is a one-line SpecError naming the file, line and key."""
    check_known(src, "", data, TOP_KEYS)
    for key in ("name", "title", "rows"):
        if key not in data:
            raise src.error("", f"missing required key '{key}'")
    name = check_text(src, "name", data["name"])
    title = check_text(src, "title", data["title"])
    check_known(src, "layout: ", [data.get("layout", "list")], [layout.value for layout in Layout], at="layout")
    layout = Layout(data.get("layout", "list"))
    metrics = check_metrics(src, "metrics", data.get("metrics", list(METRICS)))

    rows, labels = check_rows(src, data["rows"])
    fixed = check_values(src, "fixed", data.get("fixed") or {})
    across = check_across(src, data.get("across") or {})
    for key in across:
        if any(key in row for row in rows) or key in fixed:
            raise src.error(f"across.{key}", f"across.{key} is also set in rows or fixed; set it in one place")
    only_for = check_only_for(src, data.get("only_for") or {}, set(fixed) | set(across) | {k for r in rows for k in r})
    seeds = check_count(src, "seeds", data.get("seeds", 1), lo=1)
    baseline = check_count(src, "baseline", data.get("baseline", 0), lo=0)
    if baseline >= len(rows):
        raise src.error("baseline", f"baseline {baseline} is not a row index; choose 0..{len(rows) - 1}")
    grid = layout.check(src, rows, data.get("grid"))
    reference = parse_reference(src, data.get("reference") or {}, metrics, across, len(rows))
    claims = parse_claims(src, data.get("claims"), rows=len(rows), labels=labels, metrics=metrics)
    return AblationSpec(
        name=name, title=title, layout=layout, metrics=metrics, rows=rows, labels=labels,
        across=across, only_for=only_for, fixed=fixed, seeds=seeds, baseline=baseline, grid=grid,
        reference=reference, source=src, claims=claims,
    )

