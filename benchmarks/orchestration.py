"""Per-trial cost of the orchestration paths on identical tiny configurations.

Runs the same small synthetic configuration three ways and prints the wall time per trial and the
overhead over the engine alone:

1. the engine in this process, as ``sspa-ray train`` runs it (``sspa_ray.engine.fit``);
2. Tune trials on the single-device path (``--workers-per-trial 0``, the default), one at a time;
3. Tune trials that each fit a ``TorchTrainer`` with one worker (``--workers-per-trial 1``).

Ray's start-up is timed separately and not charged to the trials. The goal for path 2 is at most
3 s of overhead per trial on a 2-core machine.

    python benchmarks/orchestration.py [--trials 8] [--torch-trials 2] [--epochs 2] [--scale 0.1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

# Ray 2.60 reads this name (not RAY_DISABLE_USAGE_STATS); unset, a dashboard reports usage to usage-stats.ray.io.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _space(folder: Path, trials: int, scale: float, epochs: int) -> Path:
    # pam.alpha only changes the Mixup weights: every trial costs the same.
    alphas = ", ".join(str(1 + i) for i in range(trials))
    path = folder / f"bench{trials}.yaml"
    path.write_text(f"name: bench{trials}\nspace:\n  pam.alpha: {{grid: [{alphas}]}}\nfixed:\n"
                    f"  data.synthetic_scale: {scale}\n  train.epochs: {epochs}\n  train.selection_epochs: 1\n"
                    "  model.pretrained: none\n")
    return path


def _plan(space: Path, out: Path, workers: int):
    from sspa_ray.orchestration.plan import ExperimentPlan, Resources
    from sspa_ray.specs.search_space import load_search_space

    plan = ExperimentPlan.for_search(load_search_space(space), target="synthetic", sets={}, seeds=1, out=out,
                                     name=None, storage=None,
                                     resources=Resources(workers_per_trial=workers, max_concurrent=1))
    plan.prepare_out(resume=False, overwrite=False)
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8, help="trials of the single-device path")
    parser.add_argument("--torch-trials", type=int, default=2, help="trials of the TorchTrainer path (0: skip)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--scale", type=float, default=0.1, help="data.synthetic_scale")
    args = parser.parse_args()

    import torch

    from sspa_ray.engine import fit

    work = Path(tempfile.mkdtemp(prefix="sspa-bench-orch-"))
    os.environ.setdefault("SSPA_CACHE_DIR", str(work / "cache"))
    space = _space(work, args.trials, args.scale, args.epochs)
    plan = _plan(space, work / "probe", workers=0)
    cfg, _ = plan.trial_config({"pam.alpha": 1.0})

    fit(cfg, work / "warm", log=lambda line: None)  # generates and caches the data once
    runs = 3
    started = time.perf_counter()
    for i in range(runs):
        fit(cfg, work / f"inproc{i}", log=lambda line: None)
    engine_s = (time.perf_counter() - started) / runs
    rows = [("engine in process (sspa-ray train)", runs, engine_s * runs, engine_s)]

    import ray

    from sspa_ray.orchestration.tuner import run_experiment

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_start_s = time.perf_counter() - started
    try:
        paths = [("Tune trial, single device", args.trials, 0)]
        if args.torch_trials:
            paths.append(("Tune trial + TorchTrainer (1 worker)", args.torch_trials, 1))
        for label, trials, workers in paths:
            bench = _plan(_space(work, trials, args.scale, args.epochs), work / f"tune-w{workers}", workers)
            started = time.perf_counter()
            frame = run_experiment(bench, progress_interval_s=3600, log=lambda line: None)
            wall = time.perf_counter() - started
            assert (frame["status"] == "completed").all(), frame[["trial_id", "status", "error"]]
            rows.append((label, trials, wall, wall / trials))
    finally:
        ray.shutdown()

    print(f"\nconfiguration: synthetic scale {args.scale}, {args.epochs} epochs, backbone {cfg.model.backbone}, "
          f"{cfg.train.num_threads} torch thread(s); torch {torch.__version__}, ray {ray.__version__}, "
          f"{os.cpu_count()} CPUs")
    print(f"ray.init (once per experiment, not charged to trials): {ray_start_s:.1f} s\n")
    print(f"{'path':40} {'trials':>6} {'wall s':>8} {'s/trial':>8} {'overhead s/trial':>17}")
    for label, trials, wall, per_trial in rows:
        print(f"{label:40} {trials:6d} {wall:8.1f} {per_trial:8.2f} {per_trial - engine_s:17.2f}")
    print("\noverhead = s/trial - the engine's own s/trial; the Tune paths run one trial at a time and "
          "include writing results.parquet and the tables once per experiment.")


if __name__ == "__main__":
    main()
