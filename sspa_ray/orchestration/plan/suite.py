"""``sspa-ray ablate --preset paper``: the plan of several presets' shared trials."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sspa_ray.config import Config
from sspa_ray.orchestration.plan.ablation import AblationPlan
from sspa_ray.specs.ablation import TrialSpec
from sspa_ray.specs.suite import Suite, feeds_text


@dataclass(kw_only=True)
class SuitePlan(AblationPlan):
    """``sspa-ray ablate --preset paper``: the trials of several presets, merged where their
    configurations coincide; each trial's `feeds` names the table rows it fills."""

    spec: Suite

    def trial_feeds(self, tune_config: Mapping[str, Any]) -> str:
        return feeds_text(self.ablation_trial(tune_config).feeds)

    def _stored(self) -> dict[str, Any]:
        return {**super()._stored(), "suite": self.spec.name}

    def describe(self, log: Callable[[str], None]) -> list[Config]:
        configs = super().describe(log)
        shared = [t for t in self.trials if len(t.feeds) > 1]
        log(f"{len(shared)} trials feed more than one table row: " + "; ".join(feeds_text(t.feeds) for t in shared))
        return configs

    def _headline(self, n: int) -> str:
        tables = self.spec.tables
        separate = self.spec.separate_trials(self.target, self.sets, self.seeds)
        return (f"{self.name} on {self.target}: {len(tables)} tables ({', '.join(tables)}), "
                f"{n} distinct trials ({separate} if each table ran on its own)")

    def _rows_of(self, trial: TrialSpec) -> str:
        return ", ".join(f"{table}[{self.spec.tables[table].row_name(row)}]" for table, row in trial.feeds)
