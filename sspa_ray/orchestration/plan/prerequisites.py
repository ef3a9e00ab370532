"""What is made before the trials start: the synthetic benchmarks they read, the built-in
pretrained backbones they start from, and the warnings the driver prints once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sspa_ray.config import SYNTHETIC_PRETRAINED, Config
from sspa_ray.data import synthetic
from sspa_ray.defaults import horizon_warning

if TYPE_CHECKING:
    from sspa_ray.engine import pretrain


def recipes(configs: Iterable[Config]) -> list[pretrain.Recipe]:
    """The built-in pretrained backbones the trials start from (model.pretrained=synthetic-faces)."""
    wanted = [c for c in configs if c.model.pretrained == SYNTHETIC_PRETRAINED]
    if not wanted:
        return []
    # Imported here: pretrain loads torch (1.5 s of CPU), which a command that stops at bad input, or
    # a sweep whose trials start from no built-in backbone, never needs in its driver.
    from sspa_ray.engine import pretrain

    return list(dict.fromkeys(map(pretrain.recipe_for, wanted)))


def benchmarks(configs: Iterable[Config]) -> list[tuple[int, float]]:
    """The synthetic benchmarks (seed, scale) the trials read."""
    return list(dict.fromkeys((c.data.synthetic_seed, c.data.synthetic_scale) for c in configs if c.data.is_synthetic))


def notes(configs: Iterable[Config]) -> list[str]:
    """The distinct horizon warnings of the trials, each printed once by the driver."""
    return list(dict.fromkeys(w for w in map(horizon_warning, configs) if w))


def prepare_node(to_generate: Iterable[tuple[int, float]], to_build: Iterable[pretrain.Recipe]) -> None:
    """Generate the synthetic benchmarks and build the pretrained backbones on this node."""
    for seed, scale in to_generate:
        synthetic.ensure(seed, scale)
    to_build = list(to_build)
    if to_build:
        from sspa_ray.engine import pretrain  # torch: only where a backbone is to be built

        for recipe in to_build:
            pretrain.ensure(recipe)
