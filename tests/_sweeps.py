"""What the sweep tests share: the console script, a tiny schedule, a search-space file, a plan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sspa_ray.orchestration.plan import ExperimentPlan, Resources
from sspa_ray.specs.search_space import load_search_space

SSPA = [sys.executable, "-m", "sspa_ray.cli.main"]
# Small enough that one epoch takes well under a second on one core.
TINY = {"data.synthetic_scale": 0.1, "train.epochs": 2, "train.selection_epochs": 1, "model.pretrained": "none"}
TINY_YAML = "".join(f"  {k}: {v}\n" for k, v in TINY.items())


def write_space(tmp_path: Path, body: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def tune_plan(space_path: Path, out: Path, sets=None, seeds=1, **resources) -> ExperimentPlan:
    plan = ExperimentPlan.for_search(load_search_space(space_path), target="synthetic", sets=dict(sets or {}),
                                     seeds=seeds, out=out, name=None, storage=None, resources=Resources(**resources))
    plan.prepare_out(resume=False, overwrite=False)
    return plan


def trial_dirs(plan: ExperimentPlan) -> dict[str, Path]:
    """trial id -> its directory in storage (where metrics.json, selection.csv, train.log land)."""
    found = {}
    for result in Path(plan.experiment_path).glob("*/result.json"):
        first = result.read_text().splitlines()[0]
        found[json.loads(first)["trial_id"]] = result.parent
    return found


def run_without_ray(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess that fails if the command imported Ray (a dry run, a --resume with
    nothing left to run)."""
    code = ("import sys; from sspa_ray.cli.main import cli\n"
            "try:\n    cli(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    assert 'ray' not in sys.modules, 'Ray was imported'\n    raise\n")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)
