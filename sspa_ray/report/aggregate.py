"""Group the trials of results.parquet by configuration: mean, std and n over seeds.

A configuration is every config key except ``train.seed`` and the keys that only change how
fast a run goes (device, threads, ...). Trials that did not complete are counted by status and
kept: a configuration with no completed trial still gets its row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sspa_ray.config import EXECUTION_KEYS, KEYS, coerce
from sspa_ray.errors import ConfigError, RunDirError
from sspa_ray.outputs import METRICS, RESULTS_FILE, Status

STATUSES = tuple(s.value for s in Status)
NOT_A_CONFIGURATION = frozenset({"train.seed"}) | EXECUTION_KEYS


@dataclass
class Stat:
    """One metric of one configuration over its completed trials (values in [0, 1])."""

    values: tuple[float, ...] = ()
    seeds: tuple[Any, ...] = ()     # train.seed of each value, to pair rows by seed

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.values)) if self.values else None

    @property
    def std(self) -> float | None:
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else None


@dataclass
class Group:
    """The trials of one configuration; `stats` hold the values of its counted trials."""

    row: int                                   # ablation row index; -1 for tune
    config: dict[str, Any]                     # the configuration's config values
    statuses: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stats: dict[str, Stat] = field(default_factory=dict)
    extra: dict[str, Stat] = field(default_factory=dict)   # other numeric columns, e.g. recall.<class>

    @property
    def trials(self) -> int:
        return sum(self.statuses.values())

    @property
    def all_completed(self) -> bool:
        return self.statuses.get(Status.COMPLETED, 0) == self.trials > 0

    def status_text(self) -> str:
        order = list(STATUSES) + sorted(set(self.statuses) - set(STATUSES))
        return ", ".join(f"{self.statuses[s]} {s}" for s in order if self.statuses.get(s))

    def empty_text(self) -> str:
        """What a metric cell says when no trial completed: the most common other status."""
        others = {s: c for s, c in self.statuses.items() if s != Status.COMPLETED and c}
        return max(others, key=others.get) if others else "no value"


def read_results(exp_dir: Path) -> pd.DataFrame:
    path = Path(exp_dir) / RESULTS_FILE
    if not path.is_file():
        raise RunDirError(f"{exp_dir}: no {RESULTS_FILE} here; give the --out folder of a tune or ablate run")
    return pd.read_parquet(path)


def configuration_keys(results: pd.DataFrame) -> list[str]:
    """The config columns that identify a configuration."""
    present = [k for k in KEYS if k in results.columns and k not in NOT_A_CONFIGURATION]
    return present or [k for k in KEYS if k not in NOT_A_CONFIGURATION]


def config_value(key: str, value: Any) -> Any:
    """A parquet cell as the config value it stands for (numpy scalars, NaN for None, ...)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        return coerce(key, value)
    except ConfigError:
        return value


def group_identity(row: int, config: Mapping[str, Any], keys: Sequence[str]) -> str:
    return json.dumps([row, [[k, config.get(k)] for k in keys]], default=str)


def finite_number(value: Any) -> float | None:
    """`value` as a float when it is a finite real number (numpy scalars too), else None: NaN, inf,
    None, bools and strings are no measurement."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def aggregate(
    results: pd.DataFrame,
    metrics: Sequence[str] = METRICS,
    *,
    prefix: str = "",
    expected: Iterable[tuple[int, Mapping[str, Any]]] = (),
    extra_columns: Sequence[str] = (),
    counted: Sequence[str] = (Status.COMPLETED,),
) -> list[Group]:
    """One Group per configuration, in the order of `expected`, then in order of appearance.

    `prefix` picks the metric columns ("" for the final epoch, "best." for the best epoch).
    `expected` lists (row, config) for every trial the experiment should run; trials that are
    not in `results` yet count as pending. Only trials whose status is in `counted` contribute
    values.
    """
    keys = configuration_keys(results)
    groups: dict[str, Group] = {}
    waiting: dict[str, int] = {}
    for row, config in expected:
        config = {k: config_value(k, config.get(k)) for k in keys}
        ident = group_identity(row, config, keys)
        groups.setdefault(ident, Group(row=row, config=config))
        waiting[ident] = waiting.get(ident, 0) + 1

    for record in results.to_dict("records"):
        row = int(record["row"]) if finite_number(record.get("row")) is not None else -1
        config = {k: config_value(k, record.get(k)) for k in keys}
        ident = group_identity(row, config, keys)
        group = groups.setdefault(ident, Group(row=row, config=config))
        status = str(record.get("status") or Status.PENDING)
        group.statuses[status] = group.statuses.get(status, 0) + 1
        if status in (Status.ERRORED, Status.DIVERGED) and record.get("error"):
            seed = record.get("train.seed")
            first_line = str(record["error"]).strip().splitlines()[0][:200] if str(record["error"]).strip() else ""
            group.errors.append(f"seed {config_value('train.seed', seed)}: {status}: {first_line}")
        if status not in counted:
            continue
        seed = config_value("train.seed", record.get("train.seed"))
        for metric in metrics:
            value = finite_number(record.get(prefix + metric))
            if value is not None:
                old = group.stats.get(metric, Stat())
                group.stats[metric] = Stat(old.values + (value,), old.seeds + (seed,))
        for column in extra_columns:
            value = finite_number(record.get(column))
            if value is not None:
                old = group.extra.get(column, Stat())
                group.extra[column] = Stat(old.values + (value,), old.seeds + (seed,))

    for ident, count in waiting.items():
        group = groups[ident]
        missing = count - group.trials
        if missing > 0:
            group.statuses[Status.PENDING] = group.statuses.get(Status.PENDING, 0) + missing
    for group in groups.values():
        for metric in metrics:
            group.stats.setdefault(metric, Stat())
    return list(groups.values())
