"""What the fault tests share: the console script, a two-trial sweep of 4 epochs, its metrics as an
uninterrupted run ends them, and an interrupt sent once the run is ready for it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from sspa_ray import outputs
from sspa_ray.engine import fit
from sspa_ray.orchestration.plan import ExperimentPlan, Resources
from sspa_ray.specs.search_space import load_search_space

SSPA = [sys.executable, "-m", "sspa_ray.cli.main"]
METRICS = ["accuracy", "macro_precision", "macro_recall", "macro_f1", "best.accuracy", "best.epoch", "epochs_done"]
ALPHAS = [1, 4]
SPACE = (f"name: faults\nspace:\n  pam.alpha: {{grid: {ALPHAS}}}\nfixed:\n  data.synthetic_scale: 0.1\n"
         "  train.epochs: 4\n  train.selection_epochs: 1\n  model.pretrained: none\n")


def faults_space(tmp: Path) -> Path:
    path = tmp / "space.yaml"
    path.write_text(SPACE)
    return path


def tune(*argv, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([*SSPA, "tune", *map(str, argv)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def metrics(out: Path) -> pd.DataFrame:
    frame = pd.read_parquet(out / "results.parquet")
    return frame.sort_values("pam.alpha")[["pam.alpha", "status", *METRICS]].reset_index(drop=True)


def engine_reference(tmp: Path, space: str, alphas) -> pd.DataFrame:
    """Each alpha's final metrics without any fault, sorted by alpha: its trial configuration from `space`
    (a search space's text) run by the engine itself in this process, with one thread as a trial has."""
    path = tmp / "space.yaml"
    path.write_text(space)
    plan = ExperimentPlan.for_search(load_search_space(path), target="synthetic", sets={}, seeds=1,
                                     out=tmp / "exp", name=None, storage=None, resources=Resources())
    rows = []
    for alpha in sorted(alphas):
        cfg, _ = plan.trial_config({"pam.alpha": alpha, "train.seed": 0})
        summary = fit(cfg, tmp / f"alpha{alpha}", log=lambda line: None)
        rows.append({"pam.alpha": float(alpha), "status": "completed",
                     **{m: summary[m] for m in (*outputs.METRICS, "epochs_done")},
                     **{f"best.{key}": summary["best"][key] for key in ("accuracy", "epoch")}})
    return pd.DataFrame(rows)


def uninterrupted(tmp: Path) -> pd.DataFrame:
    """The sweep's rows (as `metrics` reads them) without any fault."""
    return engine_reference(tmp, SPACE, ALPHAS)[["pam.alpha", "status", *METRICS]]


def checkpoints(experiment: Path) -> list[Path]:
    return sorted(experiment.glob("*/checkpoint_*/epoch_*"), key=lambda p: (p.parent.parent.name, p.name))



def interrupt_when(driver: subprocess.Popen, ready, sig=signal.SIGINT, limit_s=300, group=True) -> None:
    """Send `sig` once `ready()`: to the driver's process group (as a terminal's Ctrl-C does) or the driver."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and driver.poll() is None and not ready():
        time.sleep(0.3)
    assert driver.poll() is None, "the experiment ended before it could be interrupted"
    if group:
        os.killpg(driver.pid, sig)
    else:
        os.kill(driver.pid, sig)
    driver.wait(timeout=120)

