"""Search-space YAML of ``sspa-ray tune``: parsing and validation, before any Ray code runs.

A search space names dotted config keys and one distribution for each::

    name: beta                  # experiment name (default: the file's stem)
    metric: macro_f1            # accuracy | macro_precision | macro_recall | macro_f1
    mode: max                   # max | min
    search: grid                # grid | random | optuna
    num_samples: 1              # grid: repeats of the grid; random/optuna: number of trials
    scheduler: asha             # none | asha
    grace_period: 2             # asha only: epochs before a trial may be stopped
    max_t: 12                   # asha only: the longest a trial runs, in epochs (default: train.epochs)
    reduction_factor: 2         # asha only: share of trials kept per rung is 1/reduction_factor
    space:
      pam.alpha: {grid: [1, 3, 5, 10]}
      train.lr: {loguniform: [0.001, 0.1]}
    fixed:
      model.backbone: small

Distributions: ``grid`` (every value, search: grid only), ``choice`` (one value drawn per trial),
``uniform`` / ``loguniform`` [lo, hi], ``quniform`` / ``qloguniform`` [lo, hi, q] (floats);
``randint`` / ``lograndint`` [lo, hi] and ``qrandint`` [lo, hi, q] (integers, both ends included);
``randn`` [mean, sd] (a normal float; its range check uses mean +- 3 sd, a rarer draw outside the
key's range fails that trial). Optuna cannot sample ``randn`` nor keep the step of ``qloguniform``,
so ``search: optuna`` refuses them. Every value and bound is checked against the key's allowed range, so a mistake such as
``pam.alpha: {uniform: [0, 3]}`` stops before the cluster starts.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sspa_ray.config import FIELDS, Config, allowed, check_key, coerce
from sspa_ray.defaults import make_config
from sspa_ray.errors import ConfigError, SpecError
from sspa_ray.outputs import METRICS
from sspa_ray.specs._yaml import SpecFile, name_problem, read_spec
from sspa_ray.suggest import CHOICE_CUTOFF, did_you_mean

MODES = ("max", "min")
SEARCHES = ("grid", "random", "optuna")
SCHEDULERS = ("none", "asha")
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint", "quniform", "qloguniform", "lograndint",
                 "qrandint", "randn")
INT_DISTRIBUTIONS = ("randint", "lograndint", "qrandint")
QUANTIZED = ("quniform", "qloguniform", "qrandint")
NOT_FOR_OPTUNA = ("randn", "qloguniform")
# randn's range check covers this many standard deviations either side of the mean.
RANDN_SDS = 3
_ASHA_KEYS = ("grace_period", "max_t", "reduction_factor")
TOP_LEVEL_KEYS = ("name", "metric", "mode", "search", "num_samples", "scheduler", *_ASHA_KEYS, "space", "fixed")
# Above this many combinations, cross-key checks test each key's extremes one at a time.
_MAX_CHECKED_COMBINATIONS = 4096


@dataclass(frozen=True)
class Distribution:
    """One distribution of one key. ``args`` holds coerced values (grid, choice) or bounds."""

    kind: str
    args: tuple

    def extremes(self) -> tuple:
        """The values that bound what this distribution can draw, for cross-key checks."""
        if self.kind in ("grid", "choice"):
            return self.args
        return self.args[:2]


@dataclass(frozen=True)
class Asha:
    grace_period: int = 1
    max_t: int | None = None  # None: the trial's train.epochs
    reduction_factor: float = 2.0


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    name: str
    metric: str = "macro_f1"
    mode: str = "max"
    search: str = "grid"
    num_samples: int = 1
    scheduler: str = "none"
    asha: Asha | None = None
    space: dict[str, Distribution] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)

    def check_points(self, target: str | None, overrides: Mapping[str, Any]) -> list[Config]:
        """Build the config of every extreme point of the space; raise on the first invalid one.

        Cross-key rules (selection epochs <= epochs, PAM needs SSM, ...) can only be checked on
        whole configs; checking the extremes catches them before any trial starts. Returns the
        configs, so callers can check what they need (data folders) without drawing trials.
        """
        keys = [k for k in self.space if k not in overrides]
        candidates = [self.space[k].extremes() for k in keys]
        if math.prod(len(c) for c in candidates) <= _MAX_CHECKED_COMBINATIONS:
            points = [dict(zip(keys, values, strict=True)) for values in itertools.product(*candidates)]
        else:
            base = {k: c[0] for k, c in zip(keys, candidates, strict=True)}
            points = [{**base, k: v} for k, c in zip(keys, candidates, strict=True) for v in c]
        configs = []
        for point in points or [{}]:
            try:
                configs.append(make_config(target, self.fixed, point, overrides))
            except ConfigError as exc:
                shown = ", ".join(f"{k}={v}" for k, v in point.items()) or "the fixed keys"
                raise SpecError(f"{self.path}: the point {shown} of the space is invalid: {exc}") from None
        return configs


def load_search_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file; every problem raises a one-line SpecError."""
    doc, src = read_spec(Path(path))
    return _SpaceParser(src).parse(doc)


class _SpaceParser:
    def __init__(self, src: SpecFile):
        self.src = src
        self.path = src.path

    def error(self, where: str, message: str) -> SpecError:
        return self.src.error(where, f"{where}: {message}")

    def pick(self, doc: dict, key: str, choices: tuple[str, ...], default: str) -> str:
        value = doc.get(key, default)
        if value not in choices:
            hint = did_you_mean(value, choices, cutoff=CHOICE_CUTOFF)
            hint = f" ({hint})" if hint else ""
            raise self.error(key, f"{value!r} is not allowed{hint}: expected one of {', '.join(choices)}")
        return value

    def integer(self, doc: dict, key: str, default: int | None, lo: int) -> int | None:
        value = doc.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise self.error(key, f"{value!r} is invalid: expected an integer >= {lo}")
        return value

    def parse(self, doc: dict) -> SearchSpace:
        for key in doc:
            if key not in TOP_LEVEL_KEYS:
                hint = did_you_mean(key, TOP_LEVEL_KEYS, otherwise=f"allowed keys: {', '.join(TOP_LEVEL_KEYS)}")
                raise self.error(str(key), f"unknown top-level key: {hint}")
        name = doc.get("name", self.path.stem)
        if problem := name_problem(name):
            raise self.error("name", problem)
        metric = self.pick(doc, "metric", METRICS, "macro_f1")
        mode = self.pick(doc, "mode", MODES, "max")
        search = self.pick(doc, "search", SEARCHES, "grid")
        num_samples = self.integer(doc, "num_samples", 1, lo=1)
        scheduler = self.pick(doc, "scheduler", SCHEDULERS, "none")
        asha = self.parse_asha(doc) if scheduler == "asha" else None
        if scheduler != "asha":
            for key in _ASHA_KEYS:
                if key in doc:
                    raise self.error(key, "only applies with 'scheduler: asha'; remove it or set scheduler: asha")
        space = self.parse_space(doc.get("space"), search)
        fixed = self.parse_fixed(doc.get("fixed"))
        for key in space:
            if key in fixed:
                raise self.error(f"fixed.{key}", "is also in space: keep it in one of the two")
        return SearchSpace(self.path, name, metric, mode, search, num_samples, scheduler, asha, space, fixed)

    def parse_asha(self, doc: dict) -> Asha:
        grace = self.integer(doc, "grace_period", 1, lo=1)
        max_t = self.integer(doc, "max_t", None, lo=1)
        if max_t is not None and max_t < grace:
            raise self.error("max_t", f"{max_t} is below grace_period={grace}: choose max_t >= grace_period")
        factor = doc.get("reduction_factor", 2.0)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 1:
            raise self.error("reduction_factor", f"{factor!r} is invalid: expected a number > 1, e.g. 2")
        return Asha(grace, max_t, float(factor))

    def parse_space(self, raw: Any, search: str) -> dict[str, Distribution]:
        if not isinstance(raw, dict) or not raw:
            raise self.error("space", "expected a mapping of dotted config keys to distributions, e.g. pam.alpha: {grid: [1, 3]}")
        space = {}
        for key, spec in raw.items():
            where = f"space.{key}"
            try:
                check_key(str(key))
            except ConfigError as exc:
                raise self.error(where, str(exc)) from None
            space[key] = self.parse_distribution(where, key, spec, search)
        return space

    def parse_distribution(self, where: str, key: str, spec: Any, search: str) -> Distribution:
        if not isinstance(spec, dict) or len(spec) != 1:
            raise self.error(where, "expected exactly one distribution, e.g. {grid: [1, 3]} or {uniform: [0.5, 10]}")
        (kind, args), = spec.items()
        if kind not in DISTRIBUTIONS:
            hint = did_you_mean(kind, DISTRIBUTIONS, cutoff=CHOICE_CUTOFF)
            hint = f"{hint} " if hint else ""
            raise self.error(where, f"unknown distribution {kind!r}: {hint}use one of {', '.join(DISTRIBUTIONS)}")
        if kind in NOT_FOR_OPTUNA and search == "optuna":
            raise self.error(where, f"Optuna cannot sample {kind} (Ray drops a log scale's step and has no normal "
                                    "distribution for Optuna); use search: random, or uniform/loguniform")
        if kind == "grid" and search != "grid":
            raise self.error(where, f"'grid' needs 'search: grid' (this file has search: {search}); use {{choice: [...]}} instead")
        if not isinstance(args, list) or not args:
            raise self.error(where, f"{kind} expects a non-empty list, e.g. {{{kind}: {_example(kind)}}}")
        if kind in ("grid", "choice"):
            values = tuple(self.value(where, key, v, kind) for v in args)
            if len(set(values)) != len(values):
                raise self.error(where, f"{kind} lists a value twice: list each value once")
            return Distribution(kind, values)
        return self.parse_range(where, key, kind, args)

    def parse_range(self, where: str, key: str, kind: str, args: list) -> Distribution:
        key_type = str(FIELDS[key].type).replace(" | None", "")
        wanted = "int" if kind in INT_DISTRIBUTIONS else "float"
        if key_type != wanted:
            use = "randint" if key_type == "int" else "uniform" if key_type == "float" else "grid or choice"
            raise self.error(where, f"{kind} does not fit a key of type {key_type} ({allowed(key)}): use {use}")
        size = 3 if kind in QUANTIZED else 2
        if len(args) != size or any(isinstance(a, bool) or not isinstance(a, (int, float)) for a in args):
            raise self.error(where, f"{kind} expects {size} numbers, e.g. {{{kind}: {_example(kind)}}}")
        if kind == "randn":
            if not args[1] > 0:
                raise self.error(where, f"randn standard deviation {args[1]} is invalid: expected a number > 0")
            dist = Distribution(kind, (float(args[0]), float(args[1])))
            for bound in dist.extremes():
                self.value(where, key, bound, f"randn mean +- {RANDN_SDS} sd")
            return dist
        lo = self.value(where, key, args[0], f"{kind} lower bound")
        hi = self.value(where, key, args[1], f"{kind} upper bound")
        if not lo < hi:
            raise self.error(where, f"{kind} bounds [{lo}, {hi}] are empty: the lower bound must be below the upper")
        if kind in ("loguniform", "qloguniform", "lograndint") and lo <= 0:
            raise self.error(where, f"{kind} needs a lower bound > 0, got {lo}: use a linear distribution or raise the bound")
        if kind in QUANTIZED:
            step = int(args[2]) if kind == "qrandint" else float(args[2])
            if not 0 < step <= hi - lo or (kind == "qrandint" and step != args[2]):
                raise self.error(where, f"{kind} step {args[2]} is invalid: expected 0 < q <= {hi - lo}"
                                        + (", a whole number" if kind == "qrandint" else ""))
            return Distribution(kind, (lo, hi, step))
        return Distribution(kind, (lo, hi))

    def value(self, where: str, key: str, value: Any, what: str) -> Any:
        try:
            return coerce(key, value)
        except ConfigError as exc:
            raise self.error(where, f"{what} value {value!r} is rejected: {exc}") from None

    def parse_fixed(self, raw: Any) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise self.error("fixed", "expected a mapping of dotted config keys to values, e.g. model.backbone: small")
        fixed = {}
        for key, value in raw.items():
            try:
                fixed[key] = coerce(str(key), value)
            except ConfigError as exc:
                raise self.error(f"fixed.{key}", str(exc)) from None
        return fixed


def _example(kind: str) -> str:
    return {"grid": "[1, 3, 5]", "choice": "[1, 3, 5]", "uniform": "[0.5, 10]", "loguniform": "[0.001, 0.1]",
            "randint": "[1, 10]", "quniform": "[0.5, 10, 0.5]", "qloguniform": "[0.001, 0.1, 0.0005]",
            "lograndint": "[1, 64]", "qrandint": "[2, 20, 2]", "randn": "[0.95, 0.01]"}[kind]


def with_num_samples(space: SearchSpace, num_samples: int | None) -> SearchSpace:
    """The space with --num-samples in place of its num_samples (None keeps the file's)."""
    if num_samples is None:
        return space
    if num_samples < 1:
        raise SpecError(f"--num-samples {num_samples} is invalid: give a whole number >= 1")
    return dataclasses.replace(space, num_samples=num_samples)
