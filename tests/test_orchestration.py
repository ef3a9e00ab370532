"""The Ray orchestration on a real local Ray (2 CPUs) and the synthetic benchmark at a tiny scale.

Most tests share the session's Ray started in this process (conftest's local_ray). The log,
killed-driver and dashboard tests run the real `sspa-ray tune` console script in subprocesses, and
the two-node test starts its own `ray.cluster_utils.Cluster`, and the TorchTrainer tests their own local
Ray (conftest's own_local_ray); marked own_ray, they run after every test of the session, so the shared
Ray is started once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import ray
from click.testing import CliRunner
from conftest import process_tree, still_running

from sspa_ray.cli.main import cli
from sspa_ray.config import KEYS
from sspa_ray.engine import fit
from sspa_ray.orchestration.cluster import ClusterOptions, free_port, token_path
from sspa_ray.orchestration.plan import ExperimentPlan, Resources
from sspa_ray.orchestration.tuner import run_experiment
from sspa_ray.outputs import Verdict
from sspa_ray.specs.ablation import load_ablation
from sspa_ray.specs.search_space import load_search_space

SSPA = [sys.executable, "-m", "sspa_ray.cli.main"]
# Small enough that one epoch takes well under a second on one core.
TINY = {"data.synthetic_scale": 0.1, "train.epochs": 2, "train.selection_epochs": 1, "model.pretrained": "none"}
TINY_YAML = "".join(f"  {k}: {v}\n" for k, v in TINY.items())


def _space(tmp_path: Path, body: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def _tune_plan(space_path: Path, out: Path, sets=None, seeds=1, **resources) -> ExperimentPlan:
    plan = ExperimentPlan.for_search(load_search_space(space_path), target="synthetic", sets=dict(sets or {}),
                                     seeds=seeds, out=out, name=None, storage=None, resources=Resources(**resources))
    plan.prepare_out(resume=False, overwrite=False)
    return plan


def _trial_dirs(plan: ExperimentPlan) -> dict[str, Path]:
    """trial id -> its directory in storage (where metrics.json, selection.csv, train.log land)."""
    found = {}
    for result in Path(plan.experiment_path).glob("*/result.json"):
        first = result.read_text().splitlines()[0]
        found[json.loads(first)["trial_id"]] = result.parent
    return found


def test_grid_2x2_gives_four_rows_with_the_config_columns(local_ray, tmp_path, capsys):
    space = _space(tmp_path, "search: grid\nspace:\n  pam.alpha: {grid: [1, 5]}\n  moe.experts: {grid: [1, 3]}\n"
                             f"fixed:\n{TINY_YAML}")
    plan = _tune_plan(space, tmp_path / "exp", max_concurrent=2)
    frame = run_experiment(plan, progress_interval_s=1.0)

    stored = pd.read_parquet(tmp_path / "exp" / "results.parquet")
    assert len(stored) == 4 and list(stored["trial_id"]) == list(frame["trial_id"])
    assert set(KEYS) <= set(stored.columns)
    assert {"trial_id", "status", "error", "epochs_done", "best.epoch", "best.macro_f1", "row"} <= set(stored.columns)
    assert sorted(zip(stored["pam.alpha"], stored["moe.experts"], strict=True)) == [(1.0, 1), (1.0, 3), (5.0, 1), (5.0, 3)]
    assert (stored["status"] == "completed").all() and (stored["epochs_done"] == 2).all()
    assert (stored["row"] == -1).all() and (stored["train.epochs"] == 2).all() and (stored["data.synthetic_scale"] == 0.1).all()
    assert (stored["train.num_threads"] == 1).all()  # one CPU per trial
    dirs = _trial_dirs(plan)
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
    space = _space(tmp_path, f"space:\n  pam.alpha: {{grid: [1]}}\nfixed:\n{TINY_YAML}")
    packed = _tune_plan(space, tmp_path / "packed", gpus_per_trial=0.25)
    assert packed.trial_config({"pam.alpha": 1})[0].train.gpu_share == 0.25
    ddp = _tune_plan(space, tmp_path / "ddp", gpus_per_trial=2, workers_per_trial=2)
    assert ddp.trial_config({"pam.alpha": 1})[0].train.gpu_share == 1.0


def test_optuna_with_asha_stops_poor_trials_early(local_ray, tmp_path):
    space = _space(tmp_path, """
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
    plan = _tune_plan(space, tmp_path / "exp", max_concurrent=1)
    frame = run_experiment(plan, progress_interval_s=60.0)
    assert len(frame) == 6 and frame["train.lr"].nunique() == 6  # six different suggestions
    assert set(frame["status"]) <= {"completed", "stopped"}
    stopped = frame[frame["status"] == "stopped"]
    assert len(stopped) >= 1 and (stopped["epochs_done"] < 4).all()
    assert (frame.loc[frame["status"] == "completed", "epochs_done"] == 4).all()
    assert frame["epochs_done"].sum() < 6 * 4


def test_a_crashed_trial_is_retried_from_its_checkpoint_and_ends_as_if_it_never_crashed(local_ray, tmp_path, monkeypatch):
    space = _space(tmp_path, "space:\n  pam.alpha: {grid: [3]}\nfixed:\n  data.synthetic_scale: 0.1\n"
                             "  train.epochs: 3\n  train.selection_epochs: 1\n")
    marker = tmp_path / "crashed-once"
    monkeypatch.setenv("SSPA_TEST_CRASH_AFTER_EPOCH", "2")
    monkeypatch.setenv("SSPA_TEST_CRASH_MARKER", str(marker))
    plan = _tune_plan(space, tmp_path / "exp", max_failures=2)
    frame = run_experiment(plan, progress_interval_s=60.0)
    assert marker.exists(), "the fault hook never fired"
    row = frame.iloc[0]
    log = (next(iter(_trial_dirs(plan).values())) / "train.log").read_text()
    assert row["status"] == "completed" and row["epochs_done"] == 3, (row.to_dict(), log)
    assert "restored from its last reported checkpoint" in log and "resuming from epoch_0002" in log, log

    monkeypatch.delenv("SSPA_TEST_CRASH_AFTER_EPOCH")
    cfg, _ = plan.trial_config({"pam.alpha": 3.0})
    reference = fit(cfg, tmp_path / "reference", log=lambda line: None)
    for metric in ("accuracy", "macro_precision", "macro_recall", "macro_f1"):
        assert row[metric] == reference[metric], (metric, row.to_dict(), reference["history"], log)
        assert row[f"best.{metric}"] == reference["best"][metric], (metric, row.to_dict(), reference["best"])
    stored = json.loads((next(iter(_trial_dirs(plan).values())) / "metrics.json").read_text())
    assert [r["loss"] for r in stored["history"]] == [r["loss"] for r in reference["history"]]


@pytest.mark.slow  # two Train worker start-ups: about a minute on 2 cores
@pytest.mark.own_ray
def test_torch_trainer_trials_run_the_same_engine_and_resume_from_train_checkpoints(own_local_ray, tmp_path, monkeypatch,
                                                                                   capsys):
    # The crash after epoch 2 comes with epoch 2's checkpoint cut in half: the retry falls back to
    # epoch 1's, says so on the terminal, and its log goes on after the first attempt's lines.
    space = _space(tmp_path, f"space:\n  pam.alpha: {{grid: [2]}}\nfixed:\n{TINY_YAML}")
    monkeypatch.setenv("SSPA_TEST_CRASH_AFTER_EPOCH", "2")
    monkeypatch.setenv("SSPA_TEST_CORRUPT_EPOCH", "2")
    monkeypatch.setenv("SSPA_TEST_CRASH_MARKER", str(tmp_path / "crashed-once"))
    plan = _tune_plan(space, tmp_path / "exp", workers_per_trial=1, max_failures=1)
    frame = run_experiment(plan, progress_interval_s=60.0)
    row = frame.iloc[0]
    log = (next(iter(_trial_dirs(plan).values())) / "train.log").read_text()
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


@pytest.mark.slow  # four Train worker start-ups, two at a time: minutes on 2 busy cores
@pytest.mark.timeout(1200)
@pytest.mark.own_ray
def test_tune_with_asha_and_train_workers_ends_every_trial_completed_or_stopped(own_local_ray, tmp_path):
    # ASHA stops trials (at the latest at max_t) while their thread still sits in
    # TorchTrainer.fit(); a reused trial actor then failed reset_config and Tune marked the next
    # trial ERROR without retrying it. The real `sspa-ray tune` command, 4 trials of 1 worker. Its
    # only rung (epoch 2) lies in the PA stage: a rung inside the SS stage is refused before Ray.
    space = _space(tmp_path, "search: random\nnum_samples: 4\nmetric: accuracy\nscheduler: asha\n"
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
    # The TorchTrainer sweeps before this test left nothing behind: all the CPUs are free again.
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == 2


def test_24_trials_on_2_cpus_with_a_crashing_and_a_diverging_trial(local_ray, tmp_path, monkeypatch):
    rows = "".join(f"  - {{pam.alpha: {a}}}\n" for a in range(1, 24))
    # lr 10 with weight decay 1 and tiny batches blows the weights up within the first epoch.
    rows += "  - {pam.alpha: 24, train.lr: 10, train.weight_decay: 1.0, train.batch_size: 8}\n"
    spec_path = _space(tmp_path, f"name: load\ntitle: Load test\nlayout: list\nrows:\n{rows}fixed:\n{TINY_YAML}",
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


# ---- the real console script: a log without a terminal, a killed driver, --resume, the dashboard -

def test_a_40_trial_sweep_without_a_terminal_logs_a_line_per_trial_event_and_the_table_at_the_end(tmp_path):
    """A log grows with the trials, not with trials x tables: a line when each trial starts and ends,
    named as its folder is, and the whole table at the end (and every few minutes, which this
    sweep does not last)."""
    space = _space(tmp_path, "name: log40\nsearch: random\nnum_samples: 40\nspace:\n  pam.beta: {uniform: [0.5, 3]}\n"
                             "fixed:\n  data.synthetic_scale: 0.05\n  train.epochs: 1\n  train.selection_epochs: 0\n"
                             "  model.pretrained: none\n")
    out = tmp_path / "exp"
    proc = subprocess.run([*SSPA, "tune", str(space), "--out", str(out)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900)
    log = proc.stdout
    assert proc.returncode == 0, log[-3000:]
    lines = log.splitlines()
    assert len(lines) < 300, len(lines)
    assert "Target and region quantiles" not in log  # Optuna's importance warning: the table notes explain it
    folders = {p.name for p in (out / "ray" / "log40").iterdir() if p.is_dir()}
    assert len(folders) == 40
    for name in folders:
        assert log.count(f"] {name}: running\n") == 1, name
        assert re.search(rf"^\[\d+/40 finished\] {re.escape(name)}: completed after epoch 1/1, macro_f1 \S+$", log, re.M), name
    last_table = max(i for i, line in enumerate(lines) if line.startswith("== log40: "))
    assert lines[last_table] == "== log40: 40/40 trials finished =="
    assert {row.split()[0] for row in lines[last_table + 2:last_table + 42]} == folders
    assert "Parameter importance for macro_f1" in (out / "table.md").read_text()


# ---- the real console script: a killed driver, --resume, the dashboard --------------------------

def _experiment_state(experiment: Path) -> dict[str, str]:
    """trial id -> status in the newest experiment-state snapshot Tune wrote."""
    snapshots = sorted(experiment.glob("experiment_state-*.json"))
    if not snapshots:
        return {}
    try:
        trials = json.loads(snapshots[-1].read_text())["trial_data"]
    except (json.JSONDecodeError, KeyError):
        return {}  # caught mid-write
    return {json.loads(t)["trial_id"]: json.loads(t)["status"] for t, _ in trials}


def _listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses with a listening TCP socket on `port`, from /proc/net/tcp (Linux)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, local_port = local.split(":")
        if state == "0A" and int(local_port, 16) == port:  # 0A: LISTEN
            found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def _get(url: str, token: str | None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            json.loads(response.read())
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory):
    """A 3-trial sweep started with --dashboard, probed while it runs, then SIGKILLed after its first
    trial finished (and Tune recorded that) but before the last one did."""
    tmp = tmp_path_factory.mktemp("killed")
    space = _space(tmp, "name: killed\nspace:\n  pam.alpha: {grid: [1, 2, 3]}\nfixed:\n  data.synthetic_scale: 0.1\n"
                        "  train.epochs: 3\n  train.selection_epochs: 1\n")
    out = tmp / "exp"
    argv = ["tune", str(space), "--out", str(out), "--max-concurrent", "1"]
    log = tmp / "driver.log"
    with open(log, "w") as sink:
        # A free port: 8265 may be another user's dashboard, and a busy port is refused.
        driver = subprocess.Popen([*SSPA, *argv, "--dashboard-port", str(free_port())], stdout=sink,
                                  stderr=subprocess.STDOUT,
                                  start_new_session=True)
    seen = {"argv": argv, "out": out, "space": space}
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            text = log.read_text()
            if "url" not in seen and (match := re.search(r"Ray dashboard: (http://\S+)", text)):
                url = match.group(1)
                seen["url"] = url
                seen["with_token"] = _get(f"{url}/api/version", token_path().read_text().strip())
                seen["without_token"] = _get(f"{url}/api/version", None)
                port = int(url.rsplit(":", 1)[1])
                seen["listening_on"] = _listening_addresses(port)
            states = _experiment_state(out / "ray" / "killed")
            if "url" in seen and "TERMINATED" in states.values():
                seen["finished_before_kill"] = {t for t, s in states.items() if s == "TERMINATED"}
                break
            time.sleep(0.5)
        seen["finished_driver"] = driver.poll() is not None
        tree = process_tree(driver.pid)
        if not seen["finished_driver"]:
            os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        # Ray's processes end with the driver, its agents too (sspa-ray's reaper: ray#52385).
        seen["left_running"] = still_running(tree - {driver.pid})
    finally:
        for pid in process_tree(driver.pid) | set(seen.get("left_running", ())):  # clean up what is left
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    seen["log"] = log.read_text()
    return seen


def test_dashboard_answers_with_the_token_and_listens_on_loopback_only(killed_sweep):
    seen = killed_sweep
    assert "url" in seen, seen["log"][-3000:]
    assert seen["url"].startswith("http://127.0.0.1:")
    assert str(token_path()) in seen["log"]
    assert seen["with_token"] == 200
    assert seen["without_token"] == 401
    assert seen["listening_on"] == {"127.0.0.1"}


def test_a_killed_driver_leaves_no_ray_process_running(killed_sweep):
    assert not killed_sweep["finished_driver"]
    assert killed_sweep["left_running"] == {}


def test_resume_completes_a_killed_sweep_without_rerunning_finished_trials(killed_sweep):
    seen = killed_sweep
    assert not seen["finished_driver"] and seen.get("finished_before_kill"), seen["log"][-3000:]
    out = seen["out"]
    assert not (out / "results.parquet").exists()
    experiment = out / "ray" / "killed"
    # Trial folders are named after the trial: killed-alpha=1-<trial id>.
    plan_dirs = {re.search(r"-([0-9a-f]{5}_\d{5})$", p.name).group(1): p
                 for p in experiment.iterdir() if p.name.startswith("killed-")}
    before = {t: (plan_dirs[t] / "result.json").read_text() for t in seen["finished_before_kill"]}

    proc = subprocess.run([*SSPA, *seen["argv"], "--resume"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 3 and (frame["status"] == "completed").all() and (frame["epochs_done"] == 3).all()
    for trial_id, result_lines in before.items():
        assert (plan_dirs[trial_id] / "result.json").read_text() == result_lines  # nothing re-reported
        assert "restored" not in (plan_dirs[trial_id] / "train.log").read_text()


def test_cli_refuses_to_reuse_or_resume_the_wrong_directory(tmp_path):
    space = _space(tmp_path, f"space:\n  pam.alpha: {{grid: [1]}}\nfixed:\n{TINY_YAML}")
    runner = CliRunner()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    cases = [
        (["tune", str(space), "--out", str(tmp_path / "busy")], "add --resume to continue it or --overwrite"),
        (["tune", str(space), "--out", str(tmp_path / "busy"), "--overwrite"], "not an sspa-ray experiment"),
        (["tune", str(space), "--out", str(tmp_path / "none"), "--resume"], "holds no experiment"),
        (["tune", str(space), "--gpus-per-trial", "-1"], "--gpus-per-trial"),
        (["tune", str(space), "--workers-per-trial", "2", "--gpus-per-trial", "3"], "multiple of --workers-per-trial"),
        (["tune", str(space), "--seeds", "0"], "--seeds"),
        (["tune", str(space), "--address", "nowhere"], "--address"),
        (["ablate", "modules", "--preset", "experts"], "not both"),
    ]
    for argv, needle in cases:
        result = runner.invoke(cli, argv)
        assert result.exit_code == 2, (argv, result.output)
        assert needle in result.output and result.output.count("\n") == 1, (argv, result.output)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"

    result = runner.invoke(cli, ["tune", str(space), "--dashboard-host", "0.0.0.0"], env={"RAY_AUTH_MODE": "disabled"})
    assert result.exit_code == 2 and "CVE-2023-48022" in result.output


def test_exposed_dashboard_warns_about_shadowray():
    assert ClusterOptions(dashboard=True).exposed is False
    exposed = ClusterOptions(dashboard=True, dashboard_host="0.0.0.0", dashboard_port=free_port("0.0.0.0")).check()
    assert exposed.exposed
    from sspa_ray.orchestration.cluster import exposure_warning

    text = exposure_warning("0.0.0.0", 8265)
    assert "CVE-2023-48022" in text and "ShadowRay" in text and "127.0.0.1" in text


# ---- two nodes (runs last: it replaces the shared session) ---------------------------------------

def test_ablate_synthetic_runs_the_nine_module_patterns_through_the_cli(local_ray, tmp_path):
    # The embedded default job, shrunk: the real `ablate` command, the real `modules` preset. A new
    # user's short run sets train.epochs alone; the SS stage shrinks with it, and says so.
    sets = ["--set", "data.synthetic_scale=0.1", "--set", "train.epochs=2"]
    result = CliRunner().invoke(cli, ["ablate", "--target", "synthetic", "--out", str(tmp_path / "exp"), *sets])
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
        space = _space(tmp_path, f"space:\n  pam.alpha: {{grid: [1, 2]}}\nfixed:\n{TINY_YAML}")
        # Storage on this machine's disk is shared by both nodes. --seeds 2: each alpha twice.
        plan = _tune_plan(space, tmp_path / "exp", sets={"train.seed": 5}, seeds=2)
        frame = run_experiment(plan, progress_interval_s=60.0)
        assert (frame["status"] == "completed").all() and len(frame) == 4
        assert sorted(zip(frame["pam.alpha"], frame["train.seed"], strict=True)) == [(1.0, 5), (1.0, 6), (2.0, 5), (2.0, 6)]
        used = set()
        for path in _trial_dirs(plan).values():
            used |= set(re.findall(r"on node ([0-9a-f]+)", (path / "train.log").read_text()))
        assert used == nodes
    finally:
        ray.shutdown()
        cluster.shutdown()


