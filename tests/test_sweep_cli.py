"""The real `sspa-ray tune` console script in subprocesses: its log without a terminal, a SIGKILLed
driver, --resume, the dashboard, and the directories it refuses."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from _sweeps import SSPA, TINY_YAML, run_without_ray, tune_plan, write_space
from click.testing import CliRunner
from conftest import process_tree, still_running

from sspa_ray.cli.main import cli
from sspa_ray.orchestration.cluster import ClusterOptions, free_port, token_path
from sspa_ray.outputs import RESULTS_FILE

# make test spreads tests over two workers (pytest-xdist, --dist loadgroup); this module's tests share
# module-scoped runs, so they stay together on one worker.
pytestmark = pytest.mark.xdist_group("test_sweep_cli")

# ---- the real console script: a log without a terminal, a killed driver, --resume, the dashboard -

def test_a_40_trial_sweep_without_a_terminal_logs_a_line_per_trial_event_and_the_table_at_the_end(tmp_path):
    """A log grows with the trials, not with trials x tables: a line when each trial starts and ends,
    named as its folder is, and the whole table at the end (and every few minutes, which this
    sweep does not last)."""
    space = write_space(tmp_path, "name: log40\nsearch: random\nnum_samples: 40\nspace:\n  pam.beta: {uniform: [0.5, 3]}\n"
                             "fixed:\n  data.synthetic_scale: 0.05\n  train.epochs: 1\n  train.selection_epochs: 0\n"
                             "  model.pretrained: none\n")
    out = tmp_path / "exp"
    proc = subprocess.run([*SSPA, "tune", str(space), "--out", str(out), "--max-concurrent", "1"], stdout=subprocess.PIPE,
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


def _get(url: str, token: str | None) -> tuple[int, dict]:
    """The status and the JSON body of a GET, with the bearer token if given."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory):
    """A 3-trial sweep started with --dashboard, probed while it runs, then SIGKILLed after its first
    trial finished (and Tune recorded that) but before the last one did."""
    tmp = tmp_path_factory.mktemp("killed")
    space = write_space(tmp, "name: killed\nspace:\n  pam.alpha: {grid: [1, 2, 3]}\nfixed:\n  data.synthetic_scale: 0.1\n"
                        "  train.epochs: 3\n  train.selection_epochs: 1\n")
    out = tmp / "exp"
    argv = ["tune", str(space), "--out", str(out), "--max-concurrent", "1"]
    log = tmp / "driver.log"
    with open(log, "w") as sink:
        # A free port: 8265 may be another user's dashboard, and a busy port is refused.
        # Without the suite's RAY_USAGE_STATS_ENABLED=0: sspa-ray's own default is under test.
        env = {k: v for k, v in os.environ.items() if k != "RAY_USAGE_STATS_ENABLED"}
        driver = subprocess.Popen([*SSPA, *argv, "--dashboard-port", str(free_port())], stdout=sink,
                                  stderr=subprocess.STDOUT, env=env, start_new_session=True)
    seen = {"argv": argv, "out": out, "space": space}
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            text = log.read_text()
            if "url" not in seen and (match := re.search(r"Ray dashboard: (http://\S+)", text)):
                url = match.group(1)
                seen["url"] = url
                token = token_path().read_text().strip()
                seen["with_token"], _ = _get(f"{url}/api/version", token)
                _, seen["usage_stats"] = _get(f"{url}/usage_stats_enabled", token)
                seen["without_token"], _ = _get(f"{url}/api/version", None)
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
    # The dashboard never reports usage to usage-stats.ray.io (no network but the package index).
    assert seen["usage_stats"]["data"].get("usageStatsEnabled") is False, seen["usage_stats"]


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

    # Finished now: one more --resume has nothing to run, says so, and starts no Ray.
    again = run_without_ray([*seen["argv"], "--resume"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.startswith(f"nothing to resume: all 3 trials of {out} had finished"), again.stdout
    assert len(json.loads((out / "experiment.json").read_text())["runs"]) == 2  # the start and the first --resume


def test_resume_runs_tune_unless_every_table_was_written_and_no_trial_is_left(tmp_path):
    plan = tune_plan(write_space(tmp_path, f"space:\n  pam.alpha: {{grid: [1]}}\nfixed:\n{TINY_YAML}"), tmp_path / "exp")
    plan.save()
    results = plan.out / RESULTS_FILE
    pd.DataFrame({"status": ["completed", "stopped", "diverged"]}).to_parquet(results)
    assert plan.nothing_to_resume() is None  # no stamp: stopped before its tables were all written
    plan.mark_finished()
    assert plan.nothing_to_resume().startswith(f"nothing to resume: all 3 trials of {plan.out} had finished")
    pd.DataFrame({"status": ["completed", "errored"]}).to_parquet(results)
    assert plan.nothing_to_resume() is None  # --resume retries the errored trial
    pd.DataFrame({"status": ["completed"]}).to_parquet(results)
    plan.save()  # a later start or resume: its own run has not finished
    assert plan.nothing_to_resume() is None
    plan.mark_finished()
    results.unlink()
    assert plan.nothing_to_resume() is None


def test_cli_refuses_to_reuse_or_resume_the_wrong_directory(tmp_path):
    space = write_space(tmp_path, f"space:\n  pam.alpha: {{grid: [1]}}\nfixed:\n{TINY_YAML}")
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

