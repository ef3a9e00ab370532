"""What users see of an experiment outside sspa-ray: Tune's own tables, TensorBoard, MLflow, the Ray
dashboard, Grafana and Ray Jobs. A real local Ray (2 CPUs) and the synthetic benchmark at a tiny scale.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from sspa_ray.cli.main import cli
from sspa_ray.orchestration.cluster import LOCAL_RAY_CONFIG
from sspa_ray.orchestration.monitoring import GRAFANA_DASHBOARD
from sspa_ray.orchestration.plan import ExperimentPlan, Resources
from sspa_ray.orchestration.progress import GAUGE_PREFIX, GAUGES
from sspa_ray.orchestration.tuner import run_experiment
from sspa_ray.specs.ablation import load_ablation
from sspa_ray.tracking import GROUP_TAG

# make test spreads tests over two workers (pytest-xdist, --dist loadgroup); this module's tests share
# module-scoped runs, so they stay together on one worker.
pytestmark = pytest.mark.xdist_group("test_monitoring")

TINY = "fixed:\n  data.synthetic_scale: 0.1\n  train.epochs: 2\n  train.selection_epochs: 1\n"
# Two rows that differ in one module, two seeds each: four trials, two configuration groups.
ABLATION = "name: pamab\ntitle: PAM on and off\nlayout: modules\nrows:\n  - {modules.pam: false}\n  - {modules.pam: true}\nseeds: 2\n" + TINY
NAMES = {"pamab-ssm+fix+moe-s0", "pamab-ssm+fix+moe-s1", "pamab-ssm+fix+moe+pam-s0", "pamab-ssm+fix+moe+pam-s1"}


def _plan(tmp_path: Path, body: str, **kwargs) -> ExperimentPlan:
    spec = tmp_path / "ablation.yaml"
    spec.write_text(body)
    plan = ExperimentPlan.for_ablation(load_ablation(spec), target="synthetic", sets={}, seeds=None,
                                       out=tmp_path / "exp", name=None, storage=None, resources=Resources(**kwargs))
    return plan


def _records(path: Path):
    """The records of a TFRecord file (TensorBoard's event files): length, crc, data, crc."""
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        yield data[offset + 12:offset + 12 + length]
        offset += 12 + length + 4


def _hparams(trial_dir: Path) -> dict:
    """The hparams TensorBoard's HParams view shows for a run, read back from its event files."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    found = {}
    for events in trial_dir.glob("events.out.tfevents.*"):
        for record in _records(events):
            event = Event.FromString(record)
            for value in event.summary.value:
                if value.tag == "_hparams_/session_start_info":
                    start = HParamsPluginData.FromString(value.metadata.plugin_data.content).session_start_info
                    for key, v in start.hparams.items():
                        found[key] = getattr(v, v.WhichOneof("kind"))
    return found


def _scalars(trial_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboardX.proto.event_pb2 import Event

    found: dict[str, list] = {}
    for events in trial_dir.glob("events.out.tfevents.*"):
        for record in _records(events):
            event = Event.FromString(record)
            for value in event.summary.value:
                if value.WhichOneof("value") == "simple_value":
                    found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


@pytest.fixture(scope="module")
def ablation(local_ray, tmp_path_factory):
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # the tests read the store sspa-ray wrote
    tmp = tmp_path_factory.mktemp("monitoring")
    plan = _plan(tmp, ABLATION, max_concurrent=1)  # one trial process (README, Development: the suite's time)
    plan.loggers = ["tensorboard", "mlflow", "csv"]
    plan.prepare_out(resume=False, overwrite=False)
    frame = run_experiment(plan, log=lambda line: None)
    return plan, frame


def test_tune_sees_each_trials_dotted_config(ablation):
    from ray.tune import ExperimentAnalysis

    plan, frame = ablation
    table = ExperimentAnalysis(plan.experiment_path).dataframe()
    assert {"config/modules.pam", "config/train.seed", "config/train.epochs", "config/data.synthetic_scale"} <= set(table.columns)
    assert "config/trial_index" not in table.columns
    assert sorted(zip(table["config/modules.pam"], table["config/train.seed"], strict=True)) == [(False, 0), (False, 1), (True, 0), (True, 1)]
    # Trial folders and names are short and readable; results.parquet maps every trial back to its row.
    folders = {p.name for p in Path(plan.experiment_path).iterdir() if p.is_dir()}
    assert NAMES <= folders, folders
    assert sorted(zip(frame["row"], frame["modules.pam"], strict=True)) == [(0, False), (0, False), (1, True), (1, True)]
    assert (frame["status"] == "completed").all(), frame[["status", "error"]]


def test_tensorboard_events_carry_the_config_as_hparams(ablation):
    plan, _ = ablation
    trial_dir = Path(plan.experiment_path) / "pamab-ssm+fix+moe+pam-s1"
    hparams = _hparams(trial_dir)
    assert hparams["modules.pam"] is True and hparams["train.seed"] == 1 and hparams["train.epochs"] == 2, hparams
    assert [step for step, _ in _scalars(trial_dir)["ray/tune/macro_f1"]] == [1, 2]


def test_mlflow_file_store_has_one_run_per_trial_grouped_by_configuration(ablation):
    mlflow = pytest.importorskip("mlflow")
    plan, _ = ablation
    client = mlflow.tracking.MlflowClient(tracking_uri=(plan.out / "mlruns").as_uri())
    experiment = client.get_experiment_by_name(plan.name)
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(NAMES)
    for run in runs:
        assert run.data.params["modules.pam"] in ("True", "False") and run.data.params["train.seed"] in ("0", "1")
        history = client.get_metric_history(run.info.run_id, "macro_f1")
        assert sorted(m.step for m in history) == [1, 2], history
        pam = run.data.params["modules.pam"] == "True"
        assert run.data.tags[GROUP_TAG] == ("pamab-ssm+fix+moe+pam" if pam else "pamab-ssm+fix+moe")


def test_grafana_dashboard_has_one_panel_per_gauge_by_trial():
    dashboard = json.loads(GRAFANA_DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) == len(GAUGES)
    for name, expr in zip(GAUGES, exprs, strict=True):
        assert f"ray_{GAUGE_PREFIX}{name}" in expr and "by (trial)" in expr


def test_train_writes_the_same_metrics_to_tensorboard_csv_and_mlflow(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri of the test above sets it
    import mlflow  # mlflow-skinny is in the dev extra

    loggers = ["--logger", "tensorboard", "--logger", "csv", "--logger", "mlflow"]
    run = tmp_path / "runs" / "one"
    result = CliRunner().invoke(cli, ["train", "--set", "data.synthetic_scale=0.1", "--set", "train.epochs=2",
                                      "--set", "train.selection_epochs=1", "--out", str(run), *loggers])
    assert result.exit_code == 0, result.output
    assert [step for step, _ in _scalars(run)["ray/tune/macro_f1"]] == [1, 2]
    assert _hparams(run)["modules.pam"] is True
    assert (run / "progress.csv").read_text().count("\n") == 3
    client = mlflow.tracking.MlflowClient(tracking_uri=(tmp_path / "runs" / "mlruns").as_uri())
    (found,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert found.info.run_name == "one" and found.data.params["train.epochs"] == "2"
    assert sorted(m.step for m in client.get_metric_history(found.info.run_id, "accuracy")) == [1, 2]


@pytest.mark.parametrize("command", [["train", "--out", "OUT"], ["ablate", "--target", "synthetic"]])
def test_a_tracker_without_its_extra_fails_in_one_line_before_ray(command, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    argv = [str(tmp_path / "o") if a == "OUT" else a for a in command]
    result = CliRunner().invoke(cli, [*argv, "--logger", "wandb"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == ['error: --logger wandb needs the wandb package: pip install "sspa-ray[wandb]"']
    assert not (tmp_path / "o").exists()


# ---- a `ray start --head` cluster on free ports: the dashboard's state API and Ray Jobs ------------

def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _api(url: str, path: str, token: str):
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read().decode()
    return json.loads(body) if path.startswith("/api/v0/actors") else body


@pytest.fixture(scope="module")
def head_cluster(tmp_path_factory):
    """`ray start --head --block` in its own process group on free ports (other Rays share this
    machine), stopped through that process group, never with `ray stop`."""
    gcs, dashboard, agent, agent_grpc, metrics, node_manager, object_manager, env_agent, client = _free_ports(9)
    temp_dir = tempfile.mkdtemp(prefix="sspa-", dir="/tmp")  # short: Ray's socket paths have a length limit
    bin_dir = str(Path(sys.executable).parent)
    # RAY_AUTH_MODE=token: the cluster requires the token, and clients send it to an explicit address
    # only when asked (Ray 2.60).
    # No drain on SIGTERM: a test cluster has no work to hand over, and Ray 2.60 would wait up to 30 s.
    # LOCAL_RAY_CONFIG: no idle workers for the drivers, as in sspa-ray's own local Rays.
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    env.pop("RAY_ADDRESS", None)
    log = tmp_path_factory.mktemp("head") / "ray-start.log"
    with open(log, "w") as sink:
        head = subprocess.Popen(
            [str(Path(bin_dir) / "ray"), "start", "--head", "--block", "--num-cpus", "2",
             "--port", str(gcs), "--temp-dir", temp_dir,
             "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
             "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
             "--metrics-export-port", str(metrics), "--node-manager-port", str(node_manager),
             "--object-manager-port", str(object_manager), "--runtime-env-agent-port", str(env_agent),
             "--ray-client-server-port", str(client), "--system-config", json.dumps(LOCAL_RAY_CONFIG)],
            stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url, token = f"http://127.0.0.1:{dashboard}", env["RAY_AUTH_TOKEN"]
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert head.poll() is None, log.read_text()[-3000:]
            with contextlib.suppress(OSError, ValueError):
                _api(url, "/api/version", token)
                break
            time.sleep(1)
        yield {"gcs": f"127.0.0.1:{gcs}", "url": url, "token": token, "env": env, "metrics_port": metrics}
    finally:
        # `ray start` first, alone: it stops its daemons while its GCS still answers. A SIGTERM to the
        # whole group ended the GCS first, and the head then hung on it until the SIGKILL 20 s later.
        with contextlib.suppress(ProcessLookupError):
            os.kill(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(20)
        _end_group(head.pid)
        head.wait(10)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _end_group(pgid: int, wait_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, what is left of a process group (the dashboard's module processes)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + wait_s
        try:
            os.killpg(pgid, sig)
            while time.monotonic() < deadline:
                time.sleep(0.2)
                os.killpg(pgid, 0)  # raises once the group is empty
        except ProcessLookupError:
            return


@pytest.fixture(scope="module")
def submitted(head_cluster, tmp_path_factory):
    """The ablation run as a Ray Job (`--submit`), followed to its end with a client of our own once
    the sspa-ray client has exited. The two tests below read this one run: the job's driver joins the
    cluster as any `--address` driver does (test_cluster runs those), so its trials are actors too."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    tmp = tmp_path_factory.mktemp("submitted")
    spec = tmp / "ablation.yaml"
    spec.write_text(ABLATION)
    out = tmp / "exp"
    client = subprocess.run(["sspa-ray", "ablate", str(spec), "--out", str(out), "--submit",
                             "--address", head_cluster["url"], "--max-concurrent", "2"],
                            env=head_cluster["env"], capture_output=True, text=True, timeout=300)
    assert client.returncode == 0, client.stdout[-3000:] + client.stderr[-3000:]
    job_id = re.search(r"submitted Ray Job (\S+):", client.stdout).group(1)
    jobs = JobSubmissionClient(head_cluster["url"], headers={"Authorization": f"Bearer {head_cluster['token']}"})
    deadline = time.monotonic() + 600
    while jobs.get_job_status(job_id) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        assert time.monotonic() < deadline, jobs.get_job_logs(job_id)[-3000:]
        time.sleep(2)
    return {"client": client, "status": jobs.get_job_status(job_id), "logs": jobs.get_job_logs(job_id), "out": out}


def test_submit_runs_the_ablation_as_a_ray_job_that_outlives_the_client(submitted):
    from ray.job_submission import JobStatus

    for verb in ("ray job logs --follow", "ray job stop", "--resume --submit"):
        assert verb in submitted["client"].stdout, submitted["client"].stdout
    logs = submitted["logs"]
    assert submitted["status"] == JobStatus.SUCCEEDED, logs[-3000:]
    assert "== pamab: 4/4 trials finished ==" in logs and "modules.pam  train.seed" in logs, logs[-3000:]
    assert len(pd.read_parquet(submitted["out"] / "results.parquet")) == 4


def test_each_trial_is_an_actor_named_after_it_and_its_log_has_the_epochs(head_cluster, submitted):
    url, token = head_cluster["url"], head_cluster["token"]
    actors = _api(url, "/api/v0/actors?detail=1&limit=1000", token)["data"]["result"]["result"]
    trials = {a["repr_name"]: a for a in actors if a["class_name"] == "SspaTrial"}
    assert set(trials) == NAMES, [(a["class_name"], a["repr_name"]) for a in actors]
    for name, actor in trials.items():
        log = _api(url, f"/api/v0/logs/file?actor_id={actor['actor_id']}&suffix=out&lines=10000", token)
        epochs = [line for line in log.splitlines() if line.startswith(f"[{name}] epoch ")]
        assert [line.split()[2] for line in epochs] == ["1/2", "2/2"], log[-2000:]
        assert all(word in epochs[-1] for word in ("PA", "loss", "clean aux", "acc", "macro-F1", "img/s")), epochs
    # The gauges as Prometheus scrapes them from the node: Ray prefixes them with ray_ (README, Monitoring).
    with urllib.request.urlopen(f"http://127.0.0.1:{head_cluster['metrics_port']}/metrics", timeout=30) as response:
        exported = response.read().decode()
    for name in GAUGES:
        assert re.search(rf'^ray_{GAUGE_PREFIX}{name}{{.*experiment="pamab".*trial="pamab-', exported, re.M), name


@pytest.mark.parametrize("argv, message", [
    (["--submit"], "--submit needs the cluster's dashboard address: --address http://HEAD:8265"),
    (["--submit", "--address", "auto"], "--submit needs the cluster's dashboard address"),
    (["--address", "http://127.0.0.1:8265"], "add --submit to run the experiment as a Ray Job there"),
])
def test_submit_and_job_addresses_are_checked_before_ray(argv, message, tmp_path):
    result = CliRunner().invoke(cli, ["ablate", "--target", "synthetic", "--out", str(tmp_path / "o"), *argv])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and message in result.output
    assert not (tmp_path / "o").exists()
