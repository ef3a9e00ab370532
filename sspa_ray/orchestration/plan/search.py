"""``sspa-ray tune``: the plan of a search space."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sspa_ray.config import Config
from sspa_ray.defaults import make_config
from sspa_ray.errors import SpecError
from sspa_ray.orchestration.plan import preflight, prerequisites
from sspa_ray.orchestration.plan.base import ExperimentPlan
from sspa_ray.orchestration.plan.resources import Resources
from sspa_ray.outputs import Kind
from sspa_ray.specs._yaml import check_seeds
from sspa_ray.specs.search_space import SearchSpace

# Ray's Repeater (Optuna with --seeds) numbers the replicas of a suggestion under this config key
# (ray.tune.search.repeater.TRIAL_INDEX; named here because this module imports no Ray).
REPEAT_INDEX = "__trial_index__"


@dataclass(kw_only=True)
class SearchPlan(ExperimentPlan):
    """``sspa-ray tune``: a search space's grid or samples, each run ``seeds`` times."""

    kind: ClassVar[Kind] = Kind.TUNE
    space: SearchSpace

    @classmethod
    def build(cls, space: SearchSpace, *, target: str, sets: dict[str, Any], seeds: int,
              out: Path | None, name: str | None, storage: str | None, resources: Resources,
              dry_run: bool = False) -> SearchPlan:
        check_seeds(seeds)
        if seeds > 1 and "train.seed" in space.space:
            raise SpecError(f"{space.path}: --seeds {seeds} replicates train.seed, which the space already varies; drop one")
        configs = space.check_points(target, sets)
        preflight.check_schedule(space, configs, make_config(target, space.fixed, sets))
        preflight.check_data(configs, dry_run=dry_run)
        plan = cls(name=name or space.name, target=target, sets=dict(sets), seeds=seeds,
                   spec_text=space.path.read_text(encoding="utf-8"), metric=space.metric, mode=space.mode,
                   resources=resources.check(), space=space, notes=prerequisites.notes(configs), pretrained=prerequisites.recipes(configs),
                   synthetic=prerequisites.benchmarks(configs))
        return plan._place(out, storage)

    def _distinct_keys(self) -> list[str]:
        return [k for k in self.space.space if k not in self.sets]

    def total_trials(self) -> int:
        grids = [len(d.args) for k, d in self.space.space.items() if d.kind == "grid" and k not in self.sets]
        return math.prod(grids) * self.space.num_samples * self.seeds

    def trial_layers(self, tune_config: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int]:
        point = {k: v for k, v in tune_config.items() if k in self.space.space}
        layers = [self.space.fixed, point, self.sets]
        if "train.seed" in tune_config and "train.seed" not in self.space.space:
            layers.append({"train.seed": tune_config["train.seed"]})
        elif REPEAT_INDEX in tune_config:
            layers.append({"train.seed": self.base_config().train.seed + int(tune_config[REPEAT_INDEX])})
        return layers, -1

    def tune_trial_name(self, tune_config: Mapping[str, Any], trial_id: str) -> str:
        # Sampled values may coincide once rounded into the name: the trial id keeps names apart.
        return f"{self.trial_name(tune_config)}-{trial_id}"

    def base_config(self) -> Config:
        """The config without the space's values: fixed keys and --set."""
        return make_config(self.target, self.space.fixed, self.sets)

    def param_space(self) -> dict[str, Any]:
        from ray import tune

        from sspa_ray.orchestration.searchers import domain

        space = {key: domain(dist) for key, dist in self.space.space.items() if key not in self.sets}
        if self.seeds > 1 and self.space.search != "optuna":  # Optuna's seeds come from its Repeater
            base = self.base_config().train.seed
            space["train.seed"] = tune.grid_search(list(range(base, base + self.seeds)))
        return space

    def tune_search(self, limit: int, slots: Callable[[], int]) -> dict[str, Any]:
        from ray.tune.schedulers import AsyncHyperBandScheduler
        from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch
        from ray.tune.search.repeater import Repeater

        space = self.space
        seed = self.base_config().train.seed
        num_samples = space.num_samples
        if space.search == "optuna":
            searcher = OptunaSearch(seed=seed)
            if self.seeds > 1:
                # Each suggestion runs once per seed (train.seed = base + REPEAT_INDEX); Optuna learns the mean.
                searcher = Repeater(searcher, repeat=self.seeds, set_index=True)
                num_samples *= self.seeds
            searcher = ConcurrencyLimiter(searcher, max_concurrent=max(limit or slots(), self.seeds))
        else:
            # constant_grid_search: draw the random keys once per sample and run that draw for every grid
            # value, so that the seeds grid replicates one configuration (Ray resamples them otherwise).
            searcher = BasicVariantGenerator(random_state=seed, max_concurrent=limit, constant_grid_search=True)
        scheduler = None
        if space.scheduler == "asha":
            asha = space.asha
            scheduler = AsyncHyperBandScheduler(
                time_attr="epoch", max_t=asha.max_t or self.base_config().train.epochs,
                grace_period=asha.grace_period, reduction_factor=asha.reduction_factor,
            )
        return {"metric": space.metric, "mode": space.mode, "search_alg": searcher, "scheduler": scheduler,
                "num_samples": num_samples}

    def describe(self, log: Callable[[str], None]) -> list[Config]:
        n = self.total_trials()
        log(f"{self.name} on {self.target}: {n} trials ({self.space.search} search"
            f"{f', {self.seeds} seeds each' if self.seeds > 1 else ''}); time at the space's fixed values")
        return [self.base_config()] * n
