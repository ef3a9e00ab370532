"""The checks of an experiment's inputs before Ray starts: ASHA's rungs against the trials'
schedule, and every dataset split's label file (no images), so that a wrong value or a malformed
line stops the command with one line and exit code 2."""

from __future__ import annotations

import math
from collections.abc import Iterable

from sspa_ray.config import Config
from sspa_ray.data import configured_root, data_root, read_listing
from sspa_ray.errors import SpecError
from sspa_ray.specs.search_space import SearchSpace


def check_schedule(space: SearchSpace, configs: list[Config], base: Config) -> None:
    """ASHA's rungs against the trials' epochs and SS stage, before Ray asserts on them mid-start."""
    asha = space.asha
    if asha is None:
        return
    max_t = asha.max_t or base.train.epochs
    source = "max_t" if asha.max_t else "train.epochs"
    if asha.grace_period > max_t:
        raise SpecError(f"{space.path}: grace_period={asha.grace_period} exceeds {source}={max_t}: ASHA could never "
                        f"stop a trial; lower grace_period to at most {max_t} or raise {source}")
    shortest = min(cfg.train.epochs for cfg in configs)
    if max_t > shortest:
        raise SpecError(f"{space.path}: max_t={max_t} exceeds train.epochs={shortest}: trials end before ASHA's "
                        f"last rung; set max_t to at most {shortest} or drop it")
    # Ray's rungs: grace_period * reduction_factor**k below max_t (a trial at max_t ends anyway).
    count = int(math.log(max_t / asha.grace_period) / math.log(asha.reduction_factor) + 1)
    rungs = [asha.grace_period * asha.reduction_factor ** k for k in range(count)]
    rungs = [int(r) if float(r).is_integer() else r for r in rungs if r < max_t]
    selection = max(cfg.train.selection_epochs for cfg in configs)
    if rungs and max(rungs) <= selection:
        raise SpecError(f"{space.path}: every ASHA rung (epochs {', '.join(map(str, rungs))}) falls in the SS stage "
                        f"(train.selection_epochs={selection}), so trials are stopped before PAM acts; raise "
                        f"grace_period above {selection} or lower train.selection_epochs")


def check_data(configs: Iterable[Config], *, dry_run: bool = False) -> None:
    """Read the label files of every dataset split the trials use (no images), so a missing folder
    or a malformed line stops the command before Ray starts. The synthetic target is generated.
    A dry run needs no data: without a data root it plans from the official split sizes, and
    checks the data only when a root is given."""
    seen: set[tuple] = set()
    for cfg in configs:
        if cfg.data.is_synthetic or (dry_run and configured_root(cfg.data.root) is None):
            continue
        root = data_root(cfg.data.root)
        needed = [(cfg.data.target, "train"), (cfg.data.target, "test")]
        if cfg.data.uses_aux:
            needed.append((cfg.data.aux, "train"))
        for dataset, split in needed:
            if (root, dataset, split) not in seen:
                seen.add((root, dataset, split))
                read_listing(dataset, split, root)
