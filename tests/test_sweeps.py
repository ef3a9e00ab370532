"""Tune sweeps on a real local Ray (2 CPUs, conftest's local_ray) over the synthetic benchmark at a tiny
scale: grids, Optuna with ASHA, retries from checkpoints, crashing and diverging trials, the ablation
command, and a two-node `ray.cluster_utils.Cluster` (marked own_ray: it replaces the shared Ray, so it
runs after the tests that share it)."""

from __future__ import annotations

import json
import math
import re
import time

import pandas as pd
import pytest
import ray
from _sweeps import TINY, TINY_YAML, trial_dirs, tune_plan, write_space
from click.testing import CliRunner

from sspa_ray.cli.main import cli
from sspa_ray.config import KEYS
from sspa_ray.engine import fit
from sspa_ray.orchestration.plan import ExperimentPlan, Resources
from sspa_ray.orchestration.results import HISTORY_SERIES, collect
from sspa_ray.orchestration.tuner import run_experiment
from sspa_ray.outputs import METRICS, Verdict
from sspa_ray.specs.ablation import load_ablation


def test_grid_2x2_gives_four_rows_with_the_config_columns(local_ray, tmp_path, capsys):
    space = write_space(tmp_path, "search: grid\nspace:\n  pam.alpha: {grid: [1, 5]}\n  moe.experts: {grid: [1, 3]}\n"
                             f"fixed:\n{TINY_YAML}")
    plan = tune_plan(space, tmp_path / "exp", max_concurrent=2)
    frame = run_experiment(plan, progress_interval_s=1.0)

    stored = pd.read_parquet(tmp_path / "exp" / "results.parquet")
    assert len(stored) == 4 and list(stored["trial_id"]) == list(frame["trial_id"])
    assert set(KEYS) <= set(stored.columns)
    assert {"trial_id", "status", "error", "epochs_done", "best.epoch", "best.macro_f1", "row"} <= set(stored.columns)
    assert sorted(zip(stored["pam.alpha"], stored["moe.experts"], strict=True)) == [(1.0, 1), (1.0, 3), (5.0, 1), (5.0, 3)]
    assert (stored["status"] == "completed").all() and (stored["epochs_done"] == 2).all()
    assert (stored["row"] == -1).all() and (stored["train.epochs"] == 2).all() and (stored["data.synthetic_scale"] == 0.1).all()
    assert (stored["train.num_threads"] == 1).all()  # one CPU per trial
    dirs = trial_dirs(plan)
    for record in stored.to_dict("records"):
        assert 0 <= record["accuracy"] <= 1 and record["best.epoch"] in (1, 2)
        assert record["best.accuracy"] >= record["accuracy"]
        metrics = json.loads((dirs[record["trial_id"]] / "metrics.json").read_text())
        assert record["macro_f1"] == metrics["macro_f1"] and record["best.epoch"] == metrics["best"]["epoch"]
        assert record["recall.happiness"] == metrics["per_class"]["happiness"]["recall"]
        # The images it trained and tested on, for the report's provenance line.
        selection = pd.read_csv(dirs[record["trial_id"]] / "selection.csv")
        assert record["size.target"] == (selection["source"] == "target").sum() > 0
        assert record["size.aux"] == (selection["source"] == "aux").sum() > 0
        assert record["size.test"] == sum(c["support"] for c in metrics["per_class"].values()) > 0
    for name in ("spec.yaml", "experiment.json", "table.md", "table.csv", "table.tex", "provenance.json"):
        assert (tmp_path / "exp" / name).is_file()
    stored_plan = json.loads((tmp_path / "exp" / "experiment.json").read_text())
    assert stored_plan["kind"] == "tune" and len(stored_plan["runs"]) == 1
    assert stored_plan["runs"][0]["code"].startswith("sspa-ray ")
    sizes = f"{int(stored['size.target'][0])} train, {int(stored['size.test'][0])} test images"
    assert (tmp_path / "exp" / "table.md").read_text().startswith(f"Provenance: target synthetic ({sizes}); ")
    printed = capsys.readouterr().out
    assert "== space: 4/4 trials finished ==" in printed and "pam.alpha" in printed and "moe.experts" in printed


def test_trials_packed_on_a_gpu_budget_their_share_of_its_memory(tmp_path):
    space = write_space(tmp_path, f"space:\n  pam.alpha: {{grid: [1]}}\nfixed:\n{TINY_YAML}")
    packed = tune_plan(space, tmp_path / "packed", gpus_per_trial=0.25)
    assert packed.trial_config({"pam.alpha": 1})[0].train.gpu_share == 0.25
    ddp = tune_plan(space, tmp_path / "ddp", gpus_per_trial=2, workers_per_trial=2)
    assert ddp.trial_config({"pam.alpha": 1})[0].train.gpu_share == 1.0


def test_optuna_with_asha_stops_poor_trials_early(local_ray, tmp_path):
    space = write_space(tmp_path, """
search: optuna
metric: accuracy
num_samples: 6
scheduler: asha
grace_period: 1
reduction_factor: 2
space:
  train.lr: {loguniform: [0.0001, 0.5]}
fixed:
  data.synthetic_scale: 0.1
  train.epochs: 4
  train.selection_epochs: 1
""")
    # One trial at a time makes the searcher's and the scheduler's decisions reproducible.
    plan = tune_plan(space, tmp_path / "exp", max_concurrent=1)
    frame = run_experiment(plan, progress_interval_s=60.0)
    assert len(frame) == 6 and frame["train.lr"].nunique() == 6  # six different suggestions
    assert set(frame["status"]) <= {"completed", "stopped"}
    stopped = frame[frame["status"] == "stopped"]
    assert len(stopped) >= 1 and (stopped["epochs_done"] < 4).all()
    assert (frame.loc[frame["status"] == "completed", "epochs_done"] == 4).all()
    assert frame["epochs_done"].sum() < 6 * 4


def test_a_crashed_trial_is_retried_from_its_checkpoint_and_ends_as_if_it_never_crashed(local_ray, tmp_path, monkeypatch):
    space = write_space(tmp_path, "space:\n  pam.alpha: {grid: [3]}\nfixed:\n  data.synthetic_scale: 0.1\n"
                             "  train.epochs: 3\n  train.selection_epochs: 1\n")
    marker = tmp_path / "crashed-once"
    monkeypatch.setenv("SSPA_TEST_CRASH_AFTER_EPOCH", "2")
    monkeypatch.setenv("SSPA_TEST_CRASH_MARKER", str(marker))
    plan = tune_plan(space, tmp_path / "exp", max_failures=2)
    frame = run_experiment(plan, progress_interval_s=60.0)
    assert marker.exists(), "the fault hook never fired"
    row = frame.iloc[0]
    log = (next(iter(trial_dirs(plan).values())) / "train.log").read_text()
    assert row["status"] == "completed" and row["epochs_done"] == 3, (row.to_dict(), log)
    assert "restored from its last reported checkpoint" in log and "resuming from epoch_0002" in log, log

    monkeypatch.delenv("SSPA_TEST_CRASH_AFTER_EPOCH")
    cfg, _ = plan.trial_config({"pam.alpha": 3.0})
    reference = fit(cfg, tmp_path / "reference", log=lambda line: None)
    for metric in ("accuracy", "macro_precision", "macro_recall", "macro_f1"):
        assert row[metric] == reference[metric], (metric, row.to_dict(), reference["history"], log)
        assert row[f"best.{metric}"] == reference["best"][metric], (metric, row.to_dict(), reference["best"])
    stored = json.loads((next(iter(trial_dirs(plan).values())) / "metrics.json").read_text())
    assert [r["loss"] for r in stored["history"]] == [r["loss"] for r in reference["history"]]


def test_a_completed_trials_row_comes_from_its_own_history_when_tunes_lacks_an_epoch(local_ray, tmp_path):
    # Under load, Tune once dropped the report of the epoch a trial crashed after (checkpointed and
    # resumed from, but absent from result.json): the row's best epoch moved and history.* had a hole.
    space = write_space(tmp_path, f"space:\n  pam.alpha: {{grid: [3]}}\nfixed:\n{TINY_YAML}")
    plan = tune_plan(space, tmp_path / "exp")
    frame = run_experiment(plan, progress_interval_s=60.0)
    [trial_dir] = trial_dirs(plan).values()
    reports = (trial_dir / "result.json").read_text().splitlines()
    kept = [line for line in reports if json.loads(line)["epoch"] != 1]
    assert len(kept) == len(reports) - 1
    (trial_dir / "result.json").write_text("\n".join(kept) + "\n")
    again = collect(plan)
    columns = ["epochs_done", "accuracy", "best.epoch", *(f"best.{m}" for m in METRICS),
               *(f"history.{s}" for s in HISTORY_SERIES)]
    assert again[columns].to_dict("records") == frame[columns].to_dict("records")
    assert len(again.loc[0, "history.clean_share"]) == TINY["train.epochs"]


def test_a_dead_actors_placement_group_is_released_and_tunes_own_are_kept(local_ray):
    # What a Train controller leaves behind when its trial's actor is ended mid-fit (Ray 2.60 keeps
    # the group until the job ends), next to a group the driver holds, as Tune's trial groups are.
    from ray.util.placement_group import placement_group, placement_group_table

    from sspa_ray.orchestration.tuner import ReleaseOrphanedPlacementGroups

    @ray.remote(num_cpus=0)
    class Controller:
        def reserve(self):
            group = placement_group([{"CPU": 1}])
            ray.get(group.ready())
            return group.id.hex()

    driver_group = placement_group([{"CPU": 0.5}])
    ray.get(driver_group.ready(), timeout=120)
    controller = Controller.remote()
    orphan = ray.get(controller.reserve.remote())
    ray.kill(controller)
    deadline = time.monotonic() + 60
    while placement_group_table()[orphan]["state"] == "CREATED" and time.monotonic() < deadline:
        ReleaseOrphanedPlacementGroups(interval_s=0).on_step_end(0, [])
        time.sleep(0.5)
    assert placement_group_table()[orphan]["state"] == "REMOVED"
    assert placement_group_table()[driver_group.id.hex()]["state"] == "CREATED"
    ray.util.remove_placement_group(driver_group)
    # With both groups gone, nothing in the session holds a CPU: no earlier test left a reservation behind.
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == 2


@pytest.mark.slow  # half a minute: first, so that both workers end on short tests
def test_24_trials_on_2_cpus_with_a_crashing_and_a_diverging_trial(local_ray, tmp_path, monkeypatch):
    rows = "".join(f"  - {{pam.alpha: {a}}}\n" for a in range(1, 24))
    # lr 10 with weight decay 1 and tiny batches blows the weights up within the first epoch.
    rows += "  - {pam.alpha: 24, train.lr: 10, train.weight_decay: 1.0, train.batch_size: 8}\n"
    spec_path = write_space(tmp_path, f"name: load\ntitle: Load test\nlayout: list\nrows:\n{rows}fixed:\n{TINY_YAML}",
                       "load.yaml")
    monkeypatch.setenv("SSPA_TEST_CRASH_AFTER_EPOCH", "1")
    monkeypatch.setenv("SSPA_TEST_CRASH_MARKER", str(tmp_path / "crashed-once"))
    plan = ExperimentPlan.for_ablation(load_ablation(spec_path), target="synthetic", sets={}, seeds=None,
                                       out=tmp_path / "exp", name=None, storage=None,
                                       resources=Resources(max_failures=0))
    plan.prepare_out(resume=False, overwrite=False)
    frame = run_experiment(plan, progress_interval_s=60.0)

    assert len(frame) == 24 and sorted(frame["row"]) == list(range(24))
    assert frame["status"].value_counts().to_dict() == {"completed": 22, "errored": 1, "diverged": 1}
    diverged = frame[frame["status"] == "diverged"].iloc[0]
    assert diverged["row"] == 23 and diverged["error"].startswith("diverged in epoch 1")
    assert math.isnan(diverged["accuracy"])
    errored = frame[frame["status"] == "errored"].iloc[0]
    assert "SSPA_TEST_CRASH_AFTER_EPOCH" in errored["error"] and errored["epochs_done"] == 1
    completed = frame[frame["status"] == "completed"]
    assert (completed["epochs_done"] == 2).all()
    assert completed[["accuracy", "macro_f1", "best.accuracy"]].notna().all().all()
    table = (tmp_path / "exp" / "table.md").read_text()
    assert "diverged" in table and "errored" in table


@pytest.mark.slow  # nine trials, one at a time
def test_ablate_synthetic_runs_the_nine_module_patterns_through_the_cli(local_ray, tmp_path):
    # The embedded default job, shrunk: the real `ablate` command, the real `modules` preset. A new
    # user's short run sets train.epochs alone; the SS stage shrinks with it, and says so.
    sets = ["--set", "data.synthetic_scale=0.1", "--set", "train.epochs=2"]
    result = CliRunner().invoke(cli, ["ablate", "--target", "synthetic", "--out", str(tmp_path / "exp"), *sets,
                                      "--max-concurrent", "1"])
    assert result.exit_code == 0, result.output
    assert "train.selection_epochs defaults to half of it, 1 (not 6)" in result.output
    stored = pd.read_parquet(tmp_path / "exp" / "results.parquet")
    assert (stored["train.selection_epochs"] == 1).all() and (stored["epochs_done"] == 2).all()
    assert (stored["data.crop_padding"] == 32 // 8).all()  # the pixels used, not -1 ("derived")
    modules = ["modules.ssm", "modules.fix_target", "modules.moe", "modules.pam"]
    assert {*modules, "accuracy", "macro_precision", "macro_recall", "macro_f1"} <= set(stored.columns)
    patterns = {tuple(row) for row in stored[modules].itertuples(index=False)}
    expected = {tuple(row.values()) for row in load_ablation("modules").rows}
    assert len(stored) == 9 and patterns == expected
    assert (stored["status"] == "completed").all() and (stored["model.backbone"] == "small").all()
    table = (tmp_path / "exp" / "table.md").read_text()
    assert table.count("✓") == sum(sum(p) for p in patterns)
    assert (pd.read_csv(tmp_path / "exp" / "table.csv")["pending"] == 0).all()  # completed trials matched
    for name in ("table.csv", "table.tex", "modules.png", "claims.md", "claims.csv", "selection.png",
                 "selection_gallery.png", "report.html", "provenance.json"):
        assert (tmp_path / "exp" / name).is_file()
    # table.md, claims.md and report.html name the target, the overrides and the seeds.
    named = "; --set data.synthetic_scale=0.1 --set train.epochs=2; seed 0; 2 epochs (1 of selection); sspa-ray "
    for name in ("table.md", "claims.md", "report.html"):
        text = (tmp_path / "exp" / name).read_text()
        assert "Provenance: target synthetic (" in text and named in text, name
    # The paper's claims, one verdict each; one seed is a sign, untested, never a bare holds/contradicted.
    claims = pd.read_csv(tmp_path / "exp" / "claims.csv")
    assert len(claims) == sum(len(c.metrics) for c in load_ablation("modules").claims)
    assert set(claims["verdict"]) <= {v.value for v in Verdict if not v.is_tested}
    assert (claims["test"] == "none: one seed, the sign alone").all() and not claims["tested"].any()
    # SSM's selection per epoch, with ground truth, for the selection plot.
    ssm = stored[stored["modules.ssm"]]
    assert all(len(h) == TINY["train.epochs"] for h in ssm["history.selection_precision"])
    assert ssm["aux_base_rate"].between(0, 1).all() and ssm["kept.happiness"].between(0, 1).all()



@pytest.mark.own_ray
def test_a_two_node_cluster_runs_trials_on_both_nodes(tmp_path):
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert len(nodes) == 2
        space = write_space(tmp_path, f"space:\n  pam.alpha: {{grid: [1, 2]}}\nfixed:\n{TINY_YAML}")
        # Storage on this machine's disk is shared by both nodes. --seeds 2: each alpha twice.
        plan = tune_plan(space, tmp_path / "exp", sets={"train.seed": 5}, seeds=2)
        frame = run_experiment(plan, progress_interval_s=60.0)
        assert (frame["status"] == "completed").all() and len(frame) == 4
        assert sorted(zip(frame["pam.alpha"], frame["train.seed"], strict=True)) == [(1.0, 5), (1.0, 6), (2.0, 5), (2.0, 6)]
        used = set()
        for path in trial_dirs(plan).values():
            used |= set(re.findall(r"on node ([0-9a-f]+)", (path / "train.log").read_text()))
        assert used == nodes
    finally:
        ray.shutdown()
        cluster.shutdown()


