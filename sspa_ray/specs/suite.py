"""``--preset paper``: the paper's Tables 3-9 as one experiment of shared trials.

Each table keeps its own preset (ablations/*.yaml); the suite expands every preset for the target
and merges trials whose configurations coincide, so a run shared by several tables (the full model
of Tables 3, 5, 6, 7 and 8; Table 5's "none" rows and Table 9's 10% rows; the target-only rows of
Tables 3, 8 and 9) runs once and feeds each of their rows. A trial's ``feeds`` name those rows.

The experiment's spec.yaml stores the suite with the full text of every preset, so ``report`` and
``--resume`` read the tables that were run, not whatever ablations/ holds later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sspa_ray.defaults import make_config
from sspa_ray.errors import SpecError
from sspa_ray.outputs import SPEC_FILE
from sspa_ray.specs._yaml import parse_spec, read_spec
from sspa_ray.specs.ablation import AblationSpec, TrialSpec, load_ablation, parse_ablation

PAPER = "paper"
SUITE_KEY = "suite"
# Which preset renders which table, per target: RAF-DB has Tables 3 and 5-9, CAER-S Table 4; the
# synthetic stand-in for RAF-DB runs RAF-DB's tables.
PAPER_TABLES: dict[str, dict[str, str]] = {
    "rafdb": {"table_3": "strategies", "table_5": "modules", "table_6": "experts", "table_7": "beta",
              "table_8": "aux_ratio", "table_9": "direct_merge"},
    "caers": {"table_4": "strategies"},
}
PAPER_TABLES["synthetic"] = PAPER_TABLES["rafdb"]


@dataclass
class Suite:
    """Several ablation tables run as one experiment (see the module docstring)."""

    name: str
    tables: dict[str, AblationSpec]       # table id (table_5) -> its preset
    texts: dict[str, str]                 # table id -> the preset's YAML text

    @property
    def seeds(self) -> int:
        """The most seeds any table runs: the suite's default --seeds."""
        return max(table.seeds for table in self.tables.values())

    @property
    def metrics(self) -> tuple[str, ...]:
        return next(iter(self.tables.values())).metrics

    def trials(self, target: str, overrides: Mapping[str, Any] | None = None, seeds: int | None = None) -> list[TrialSpec]:
        """The distinct trials of every table, in table order; `feeds` lists (table, row) of each."""
        merged: dict[tuple, TrialSpec] = {}
        for table, spec in self.tables.items():
            for trial in spec.trials(target, overrides, seeds):
                identity = tuple(make_config(target, trial.overrides).to_flat().items())
                if identity in merged:
                    merged[identity].feeds.append((table, trial.row))
                else:
                    merged[identity] = TrialSpec(row=-1, overrides=trial.overrides, feeds=[(table, trial.row)])
        return list(merged.values())

    def separate_trials(self, target: str, overrides: Mapping[str, Any] | None = None, seeds: int | None = None) -> int:
        """How many trials the tables' presets run one by one, without sharing."""
        return sum(len(spec.trials(target, overrides, seeds)) for spec in self.tables.values())

    def text(self) -> str:
        """spec.yaml of the experiment: the suite with every preset's full text."""
        return yaml.safe_dump({SUITE_KEY: self.name, "tables": self.texts}, sort_keys=False, allow_unicode=True, width=1000)


def paper_suite(target: str) -> Suite:
    tables = PAPER_TABLES.get(target)
    if tables is None:
        raise SpecError(f"--preset paper has no tables for target {target}: choose one of {', '.join(PAPER_TABLES)}")
    specs = {table: load_ablation(name) for table, name in tables.items()}
    return Suite(PAPER, specs, {table: spec.text() for table, spec in specs.items()})


def is_suite(text: str) -> bool:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and SUITE_KEY in data


def load_suite(path: Path) -> Suite:
    """A suite from an experiment's spec.yaml (written by :meth:`Suite.text`)."""
    data, src = read_spec(path)
    tables = data.get("tables")
    if not isinstance(tables, dict) or not tables:
        raise src.error("tables", "a suite needs 'tables' mapping table ids to preset YAML texts")
    specs = {}
    for table, text in tables.items():
        specs[table] = parse_ablation(*parse_spec(text, path.parent / table / SPEC_FILE))
    return Suite(str(data[SUITE_KEY]), specs, dict(tables))


def feeds_text(feeds: list[tuple[str, int]]) -> str:
    """The `feeds` column of results.parquet: 'table_5:8 table_8:3'."""
    return " ".join(f"{table}:{row}" for table, row in feeds)


def parse_feeds(text: Any) -> list[tuple[str, int]]:
    if not isinstance(text, str):
        return []
    out = []
    for word in text.split():
        table, _, row = word.partition(":")
        out.append((table, int(row)))
    return out
