"""Trials that train in Ray Train worker groups (TorchTrainer), on a local Ray of this module's own
(conftest's own_local_ray): a retried Train trial once left a CPU reserved in a shared session, so
the test that retries one runs last here."""

from __future__ import annotations

import pandas as pd
import pytest
from _sweeps import TINY_YAML, trial_dirs, tune_plan, write_space
from click.testing import CliRunner

from sspa_ray.cli.main import cli
from sspa_ray.engine import fit
from sspa_ray.orchestration.tuner import run_experiment

# One worker runs both tests, in this order, on one Ray: a Ray start fewer, and the session's Ray is
# replaced once on that worker instead of once on each.
pytestmark = pytest.mark.xdist_group("test_train_workers")


@pytest.mark.slow  # four Train worker start-ups, two at a time: minutes on 2 busy cores
@pytest.mark.timeout(1200)
@pytest.mark.own_ray
def test_tune_with_asha_and_train_workers_ends_every_trial_completed_or_stopped(own_local_ray, tmp_path):
    # ASHA stops trials (at the latest at max_t) while their thread still sits in
    # TorchTrainer.fit(); a reused trial actor then failed reset_config and Tune marked the next
    # trial ERROR without retrying it. The real `sspa-ray tune` command, 4 trials of 1 worker. Its
    # only rung (epoch 2) lies in the PA stage: a rung inside the SS stage is refused before Ray.
    space = write_space(tmp_path, "search: random\nnum_samples: 4\nmetric: accuracy\nscheduler: asha\n"
                             "grace_period: 2\nreduction_factor: 2\nspace:\n  train.lr: {loguniform: [0.001, 0.3]}\n"
                             f"fixed:\n{TINY_YAML.replace('train.epochs: 2', 'train.epochs: 3')}")
    result = CliRunner().invoke(cli, ["tune", str(space), "--target", "synthetic", "--out", str(tmp_path / "exp"),
                                      "--workers-per-trial", "1", "--max-failures", "0"])
    stored = pd.read_parquet(tmp_path / "exp" / "results.parquet")
    assert result.exit_code == 0, (result.output, stored[["status", "error"]].to_dict("records"))
    assert len(stored) == 4 and set(stored["status"]) <= {"completed", "stopped"}, stored[["status", "error"]]
    assert (stored["epochs_done"] >= 1).all()
    # Trials ended by the scheduler still publish their outputs: completed ones have per-class recall.
    completed = stored[stored["status"] == "completed"]
    assert len(completed) >= 1 and completed["recall.happiness"].notna().all(), stored.to_dict("records")


@pytest.mark.slow  # two Train worker start-ups: about a minute on 2 cores
@pytest.mark.own_ray
def test_torch_trainer_trials_run_the_same_engine_and_resume_from_train_checkpoints(own_local_ray, tmp_path, monkeypatch,
                                                                                   capsys):
    # The crash after epoch 2 comes with epoch 2's checkpoint cut in half: the retry falls back to
    # epoch 1's, says so on the terminal, and its log goes on after the first attempt's lines.
    space = write_space(tmp_path, f"space:\n  pam.alpha: {{grid: [2]}}\nfixed:\n{TINY_YAML}")
    monkeypatch.setenv("SSPA_TEST_CRASH_AFTER_EPOCH", "2")
    monkeypatch.setenv("SSPA_TEST_CORRUPT_EPOCH", "2")
    monkeypatch.setenv("SSPA_TEST_CRASH_MARKER", str(tmp_path / "crashed-once"))
    plan = tune_plan(space, tmp_path / "exp", workers_per_trial=1, max_failures=1)
    frame = run_experiment(plan, progress_interval_s=60.0)
    row = frame.iloc[0]
    log = (next(iter(trial_dirs(plan).values())) / "train.log").read_text()
    assert (tmp_path / "crashed-once").exists()
    assert row["status"] == "completed" and row["epochs_done"] == 2, (row.to_dict(), log)
    assert "rank 0" in log and "resuming from epoch_0001" in log and log.count("epoch 2/2") == 2, log
    assert "epoch_0002: sha256 mismatch; falling back" in capsys.readouterr().out

    monkeypatch.delenv("SSPA_TEST_CRASH_AFTER_EPOCH")
    monkeypatch.delenv("SSPA_TEST_CORRUPT_EPOCH")
    cfg, _ = plan.trial_config({"pam.alpha": 2.0})
    reference = fit(cfg, tmp_path / "reference", log=lambda line: None)
    for metric in ("accuracy", "macro_f1", "clean_share"):
        assert row[metric] == reference[metric], (metric, row.to_dict(), reference["history"])
