"""``sspa-ray ablate``: the plan of one preset's rows."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sspa_ray.config import Config
from sspa_ray.defaults import make_config
from sspa_ray.orchestration.plan import preflight, prerequisites
from sspa_ray.orchestration.plan.base import ExperimentPlan
from sspa_ray.orchestration.plan.naming import identity
from sspa_ray.orchestration.plan.resources import Resources
from sspa_ray.outputs import Kind
from sspa_ray.specs.ablation import AblationSpec, TrialSpec
from sspa_ray.specs.suite import Suite


@dataclass(kw_only=True)
class AblationPlan(ExperimentPlan):
    """``sspa-ray ablate``: one preset's explicit list of trials, one per row, combination and seed."""

    kind: ClassVar[Kind] = Kind.ABLATE
    spec: AblationSpec
    trials: list[TrialSpec]

    @classmethod
    def build(cls, spec: AblationSpec | Suite, *, target: str, sets: dict[str, Any], seeds: int | None,
              out: Path | None, name: str | None, storage: str | None, resources: Resources,
              dry_run: bool = False) -> AblationPlan:
        trials = spec.trials(target, sets, seeds)
        configs = [make_config(target, t.overrides) for t in trials]
        preflight.check_data(configs, dry_run=dry_run)
        plan = cls(name=name or spec.name, target=target, sets=dict(sets), seeds=spec.seeds if seeds is None else seeds,
                   spec_text=spec.text(), metric=spec.metrics[0], mode="max", resources=resources.check(),
                   spec=spec, trials=trials, notes=prerequisites.notes(configs), pretrained=prerequisites.recipes(configs),
                   synthetic=prerequisites.benchmarks(configs))
        return plan._place(out, storage)

    def _distinct_keys(self) -> list[str]:
        # Once per key, not once per (trial, key): every trial's name asks, and the paper suite has 63 trials.
        keys = dict.fromkeys(k for t in self.trials for k in t.overrides)
        return [k for k in keys if len({repr(t.overrides.get(k)) for t in self.trials}) > 1]

    def total_trials(self) -> int:
        return len(self.trials)

    def tune_configs(self) -> list[dict[str, Any]]:
        """What Tune sees of each trial: its dotted config (fixed keys, the row, its `across`
        values, the seed and --set), so Tune's tables, folders and loggers show it."""
        return [dict(t.overrides) for t in self.trials]

    def trial_layers(self, tune_config: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int]:
        trial = self.ablation_trial(tune_config)
        return [trial.overrides], trial.row

    def ablation_trial(self, tune_config: Mapping[str, Any]) -> TrialSpec:
        """The trial of a Tune config, found by its dotted config."""
        return self._trials_by_config[identity(tune_config)]

    @functools.cached_property
    def _trials_by_config(self) -> dict[str, TrialSpec]:
        return {identity(t.overrides): t for t in self.trials}

    def param_space(self) -> dict[str, Any]:
        return {}  # the ListSearcher suggests every trial's config

    def tune_search(self, limit: int, slots: Callable[[], int]) -> dict[str, Any]:
        from sspa_ray.orchestration.searchers import ListSearcher

        return {"search_alg": ListSearcher(self.tune_configs()), "num_samples": len(self.trials),
                "max_concurrent_trials": limit or None}

    def _stored(self) -> dict[str, Any]:
        return {**super()._stored(), "trials": len(self.trials)}

    def describe(self, log: Callable[[str], None]) -> list[Config]:
        configs = [make_config(self.target, t.overrides) for t in self.trials]
        log(self._headline(len(configs)))
        varied = [k for k in self.varied_keys() if k != "train.seed"] + (["train.seed"] if self.seeds > 1 else [])
        for i, (trial, cfg) in enumerate(zip(self.trials, configs, strict=True)):
            keys = " ".join(f"{k}={cfg.get(k)}" for k in varied)
            log(f"  {i:3d}  {keys}  -> {self._rows_of(trial)}")
        return configs

    def _headline(self, n: int) -> str:
        return f"{self.name} on {self.target}: {n} trials"

    def _rows_of(self, trial: TrialSpec) -> str:
        """The table row(s) a trial fills, as --dry-run lists them."""
        return f"row {trial.row} [{self.spec.row_name(trial.row)}]"
