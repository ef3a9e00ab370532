"""Tune's side of the plans' search: the searcher of an explicit trial list and Ray's domain of each
search-space distribution (this module imports Ray; plan.py does not, at import time)."""

from __future__ import annotations

import json
from typing import Any

from ray import tune
from ray.tune.search import Searcher

from sspa_ray.specs.search_space import Distribution


class ListSearcher(Searcher):
    """Suggests an explicit list of configurations in order, so each trial's Tune config is exactly
    its flat dotted config (a grid over whole dicts would nest them under one key)."""

    def __init__(self, configs: list[dict[str, Any]]):
        super().__init__()
        self.configs = configs
        self.next = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.next >= len(self.configs):
            return Searcher.FINISHED
        self.next += 1
        return dict(self.configs[self.next - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # required by Searcher; a fixed list learns nothing from results

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w", encoding="utf-8") as file:
            json.dump({"next": self.next}, file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, encoding="utf-8") as file:
            self.next = json.load(file)["next"]


def domain(dist: Distribution):
    """Ray's search domain of one distribution of a search space."""
    args = list(dist.args)
    if dist.kind == "grid":
        return tune.grid_search(args)
    if dist.kind == "choice":
        return tune.choice(args)
    if dist.kind == "uniform":
        return tune.uniform(*args)
    if dist.kind == "loguniform":
        return tune.loguniform(*args)
    if dist.kind == "randint":
        return tune.randint(args[0], args[1] + 1)  # the YAML's upper bound is included
    if dist.kind == "lograndint":
        return tune.lograndint(args[0], args[1] + 1)
    if dist.kind == "qrandint":
        return tune.qrandint(*args)  # Ray includes qrandint's upper bound itself
    if dist.kind == "qloguniform":
        return tune.qloguniform(*args)
    if dist.kind == "randn":
        return tune.randn(*args)
    return tune.quniform(*args)
