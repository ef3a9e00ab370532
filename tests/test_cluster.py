"""Clusters that lose nothing: real `ray start` clusters on this machine, a real S3 server (moto).

Each node is a `ray start` with its own temp dir, raylet and ports, and its own loopback address:
Ray 2.60 rewrites 127.0.0.1 (and only that spelling) to the machine's network address, so the head
is 127.0.0.2 and the workers 127.0.0.3, .4, ... Nodes are stopped by their own process ids, never
with `ray stop` (other Rays share this machine). The nodes run with PATH=/usr/bin:/bin, as a head
started from a virtual environment without activating it: Ray's own processes need nothing on PATH,
and a Ray Job's `sspa-ray` is not found. The experiments are stored in the moto server; the nodes
have the credentials, and only the driver has the endpoint (AWS_ENDPOINT_URL): sspa-ray passes it on.

- `--submit` to that head exits 1 with the job's log and the fix.
- A worker node's raylet SIGKILLed mid-sweep: every trial completes, the hit one from its checkpoint
  on a surviving node, at most the epoch in flight trained twice, the same metrics as without the
  loss; a node that joins mid-sweep receives trials.
- Every node (and the driver, and its --out) lost mid-sweep, then a new cluster and `--resume` from
  the store: finished trials stay finished, the others continue from their checkpoints, the same
  metrics.

Epochs trained are counted from SSPA_TEST_EPOCH_JOURNAL, a line per epoch start from every node; in the
node-loss test SSPA_TEST_EPOCH_HOLD keeps the trials in flight while a node is killed and another joins.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
from _fault_runs import engine_reference
from conftest import BUCKET, process_tree, processes, still_running

from sspa_ray.orchestration.cluster import LOCAL_RAY_CONFIG

# make test spreads tests over two workers (pytest-xdist, --dist loadgroup); this module's tests share
# module-scoped runs, so they stay together on one worker.
pytestmark = pytest.mark.xdist_group("test_cluster")

SSPA = [sys.executable, "-m", "sspa_ray.cli.main"]
RAY = str(Path(sys.executable).parent / "ray")
NAME = "lossy"
# Four trials on two one-CPU nodes: two in flight when a node is lost, two still waiting for a node.
ALPHAS = [1, 2, 3, 4]
EPOCHS = 4
SPACE = (f"name: {NAME}\nspace:\n  pam.alpha: {{grid: {ALPHAS}}}\nfixed:\n  data.synthetic_scale: 0.1\n"
         f"  train.epochs: {EPOCHS}\n  train.selection_epochs: 1\n  model.pretrained: none\n")
METRICS = ["accuracy", "macro_precision", "macro_recall", "macro_f1"]
LIMIT_S = 420


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Node:
    """One `ray start` node: its temp dir names every process it starts."""

    def __init__(self, temp_dir: str, ip: str):
        self.temp_dir, self.ip = temp_dir, ip
        self.head = ""  # its cluster's head address, once started
        self.dashboard_port: int | None = None  # a head's dashboard (the Jobs API), if it runs one

    def pids(self) -> set[int]:
        """Its daemons (their command lines name its temp dir) and their children (trial workers)."""
        own = {pid for pid, cmdline in processes().items() if self.temp_dir in cmdline}
        return set().union(*(process_tree(pid) for pid in own)) if own else set()

    def raylet(self) -> int:
        [pid] = [pid for pid, cmdline in processes().items()
                 if self.temp_dir in cmdline and cmdline.split()[0].endswith("/raylet")]
        return pid

    def kill(self) -> None:
        for _ in range(3):  # children may appear while their parents die
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)


class Clusters:
    """Starts `ray start` nodes on this machine; stops every one it started, by process id."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.nodes: list[Node] = []
        self.next_ip = 2

    def node(self, head: str | None = None, dashboard: bool = False) -> tuple[Node, str]:
        """Start a head (`head` None) or a worker joining `head`; returns it and the head's address.
        A head runs the dashboard (the Jobs API) only if asked."""
        ip = f"127.0.0.{self.next_ip}"
        self.next_ip += 1
        node = Node(tempfile.mkdtemp(prefix="sspa-", dir="/tmp"), ip)  # short: socket paths are limited
        self.nodes.append(node)
        ports = {flag: _free_port() for flag in ("node-manager-port", "object-manager-port", "metrics-export-port",
                                                  "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                  "runtime-env-agent-port")}
        argv = [RAY, "start", f"--node-ip-address={ip}", f"--temp-dir={node.temp_dir}", "--num-cpus=1",
                "--disable-usage-stats", *(f"--{flag}={port}" for flag, port in ports.items())]
        if head is None:
            gcs = _free_port()
            head = f"{ip}:{gcs}"
            # The head's system config reaches every node: no idle workers for the drivers, as in
            # sspa-ray's own local Rays (trials are actors, started in workers of their own).
            argv += ["--head", f"--port={gcs}", f"--ray-client-server-port={_free_port()}",
                     f"--system-config={json.dumps(LOCAL_RAY_CONFIG)}"]
            # Without the dashboard's modules Ray still runs its process, on the port given here.
            dashboard_port = _free_port()
            argv += ["--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
                     f"--include-dashboard={str(dashboard).lower()}"]
            if dashboard:
                node.dashboard_port = dashboard_port
        else:
            argv.append(f"--address={head}")
        started = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        node.head = head
        return node, head

    def cluster(self, dashboard: bool = False) -> tuple[Node, Node, str]:
        head, address = self.node(dashboard=dashboard)
        worker, _ = self.node(address)
        return head, worker, address

    def alive(self, address: str) -> list[Node]:
        """The nodes of the cluster at `address` whose processes still run."""
        return [node for node in self.nodes if node.head == address and node.pids()]

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


@pytest.fixture(scope="module")
def clusters(object_store):
    token = secrets.token_hex(32)  # the cluster's own token: ~/.ray stays untouched
    # Without the loopback switch that an in-process local run of an earlier test leaves in
    # os.environ (cluster.isolate_local_ray): with it `ray start --address` refuses to join.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"))}
    env.update(object_store.env)
    env.update({"PATH": "/usr/bin:/bin", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
                "RAY_USAGE_STATS_ENABLED": "0"})
    made = Clusters(env)
    try:
        made.first = made.cluster(dashboard=True)  # the submit test's Jobs API
        yield made
    finally:
        made.stop()


def _driver_env(clusters: Clusters, object_store, journal: Path) -> dict[str, str]:
    env = {**clusters.env, "PATH": os.environ["PATH"], "AWS_ENDPOINT_URL": object_store.endpoint,
           "SSPA_TEST_EPOCH_JOURNAL": str(journal)}
    return env


def _tune(address: str, space: Path, out: Path, storage: str, *extra: str) -> list[str]:
    return [*SSPA, "tune", str(space), "--out", str(out), "--storage", storage, "--address", address, *extra]


def _journal(path: Path, *, with_pid: bool = False) -> list[tuple]:
    """(trial folder, run folder, epoch[, the process training it]) per epoch start, in order."""
    lines = path.read_text().splitlines() if path.exists() else []
    entries = []
    for line in lines:
        run_dir, epoch, pid = line.rsplit("\t", 2)
        entries.append((Path(run_dir).parent.name, run_dir, int(epoch), *((int(pid),) if with_pid else ())))
    return entries


def _twice(entries) -> dict[str, int]:
    """Trial folder -> epochs started more than once."""
    epochs = defaultdict(list)
    for trial, _, epoch in entries:
        epochs[trial].append(epoch)
    return {trial: len(seen) - len(set(seen)) for trial, seen in epochs.items()}


def _wait(driver: subprocess.Popen, ready, log: Path, every_s: float = 0.3) -> None:
    deadline = time.monotonic() + LIMIT_S
    while not ready():
        assert driver.poll() is None, "the sweep ended first: " + log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(every_s)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Each trial's final metrics without any loss: the engine itself, as a trial runs it (1 thread)."""
    return engine_reference(tmp_path_factory.mktemp("reference"), SPACE, ALPHAS)[["pam.alpha", *METRICS]]


def _metrics(out: Path) -> pd.DataFrame:
    frame = pd.read_parquet(out / "results.parquet")
    assert (frame["status"] == "completed").all() and (frame["epochs_done"] == EPOCHS).all(), frame
    return frame.sort_values("pam.alpha")[["pam.alpha", *METRICS]].reset_index(drop=True)


def _run_dir_node(run_dir: str, nodes: list[Node]) -> Node | None:
    return next((node for node in nodes if run_dir.startswith(node.temp_dir)), None)


def test_submit_to_a_head_without_sspa_ray_on_its_path_exits_1_with_the_fix(clusters, tmp_path):
    env = {**clusters.env, "PATH": os.environ["PATH"]}
    proc = subprocess.run([*SSPA, "ablate", "--target", "synthetic", "--out", str(tmp_path / "exp"), "--submit",
                           "--address", f"http://127.0.0.1:{clusters.first[0].dashboard_port}"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "before the experiment started" in proc.stderr and "sspa-ray: not found" in proc.stderr, proc.stderr
    assert "likely fix:" in proc.stderr and "ray start --head" in proc.stderr and "source .venv/bin/activate" in proc.stderr
    assert "submitted Ray Job" not in proc.stdout


def test_a_lost_worker_node_costs_at_most_the_epoch_in_flight(clusters, object_store, reference, tmp_path):
    head, worker, address = clusters.first
    space, out, journal, log = tmp_path / "space.yaml", tmp_path / "exp", tmp_path / "journal", tmp_path / "driver.log"
    space.write_text(SPACE)
    # Every trial waits at the start of its epoch 2 (epoch 1 checkpointed) until `hold` is removed, so
    # neither the kill nor the node joining can race a trial to its end, however loaded the machine.
    hold = tmp_path / "hold"
    hold.touch()
    env = {**_driver_env(clusters, object_store, journal), "SSPA_TEST_EPOCH_HOLD": str(hold)}
    with open(log, "w") as sink:
        driver = subprocess.Popen(_tune(address, space, out, f"s3://{BUCKET}/nodeloss"), stdout=sink,
                                  stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        def held_on_worker() -> list[int]:
            return [pid for _, run, epoch, pid in _journal(journal, with_pid=True)
                    if run.startswith(worker.temp_dir) and epoch == 2]

        _wait(driver, held_on_worker, log, every_s=0.2)  # the worker's trial is in flight: kill its raylet
        os.kill(worker.raylet(), signal.SIGKILL)
        # The trial's process goes with its raylet (Ray's workers exit when it dies); once it is gone it
        # can train nothing more, and the hold can end.
        _wait(driver, lambda: not still_running(set(held_on_worker()), wait_s=0), log, every_s=0.2)
        joined, _ = clusters.node(address)  # a new node joins mid-sweep, while trials are still waiting to run
        hold.unlink()
        driver.wait(timeout=LIMIT_S)
    finally:
        for pid in process_tree(driver.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        worker.kill()
    assert driver.returncode == 0, log.read_text()[-4000:]
    pd.testing.assert_frame_equal(_metrics(out), reference)  # as if no node had been lost

    # The trial process may train on a little after its raylet died, until it notices: the journal
    # has every epoch it started, on every node.
    entries = _journal(journal)
    on_worker = {trial for trial, run, _ in entries if run.startswith(worker.temp_dir)}
    hit = {trial for trial, run, _ in entries if trial in on_worker and not run.startswith(worker.temp_dir)}
    assert hit, "no trial was interrupted: the kill came between trials"
    for trial in hit:  # continued elsewhere from its last checkpoint, not from epoch 1
        rest = [(run, epoch) for t, run, epoch in entries if t == trial and not run.startswith(worker.temp_dir)]
        assert rest[0][1] >= 2, rest
    twice = _twice(entries)
    assert all(n <= (1 if trial in hit else 0) for trial, n in twice.items()), twice
    assert any(run.startswith(joined.temp_dir) for _, run, _ in entries), "the node that joined got no trial"


def _stored_states(object_store, prefix: str) -> dict[str, str]:
    """Trial id -> status in the newest experiment-state snapshot in the store."""
    snapshots = sorted(key for key in object_store.keys(prefix) if key.rsplit("/", 1)[-1].startswith("experiment_state-"))
    if not snapshots:
        return {}
    body = object_store.client().get_object(Bucket=BUCKET, Key=snapshots[-1])["Body"].read()
    try:
        trials = json.loads(body)["trial_data"]
    except (json.JSONDecodeError, KeyError):
        return {}
    return {json.loads(t)["trial_id"]: json.loads(t)["status"] for t, _ in trials}


def test_a_lost_cluster_resumes_from_the_store_on_a_new_one(clusters, object_store, reference, tmp_path):
    # The first cluster, as the test above leaves it: its head and the node that joined (or its
    # worker, when this test runs alone). Two nodes of one CPU; all of it is lost below.
    address = clusters.first[2]
    nodes = clusters.alive(address)
    assert len(nodes) == 2, [node.temp_dir for node in nodes]
    space, out, journal, log = tmp_path / "space.yaml", tmp_path / "exp", tmp_path / "journal", tmp_path / "driver.log"
    space.write_text(SPACE)
    storage, prefix = f"s3://{BUCKET}/clusterloss", f"clusterloss/{NAME}/"
    env = _driver_env(clusters, object_store, journal)
    with open(log, "w") as sink:
        driver = subprocess.Popen(_tune(address, space, out, storage), stdout=sink, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)
    try:
        def finished_and_midway() -> bool:
            """A trial is finished in the stored state, and another has checkpointed epochs but not all."""
            newest = defaultdict(int)
            for trial, _, epoch in _journal(journal):
                newest[trial] = max(newest[trial], epoch)
            midway = [t for t, epoch in newest.items() if 2 <= epoch < EPOCHS]
            # The local journal first: the store is read only once a trial has started its last epoch
            # (which a finished one has) and another is midway, not 20 times a second all along.
            if EPOCHS not in newest.values() or not midway:
                return False
            done = {t for t, status in _stored_states(object_store, prefix).items() if status == "TERMINATED"}
            return bool(done) and any(not any(t.endswith(d) for d in done) for t in midway)

        _wait(driver, finished_and_midway, log, every_s=0.05)
        # Everything goes at once, as when a spot cluster is reclaimed: the driver on it too.
        for pid in process_tree(driver.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for node in nodes:
            node.kill()
    finally:
        for pid in process_tree(driver.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not (out / "results.parquet").exists()
    states = _stored_states(object_store, prefix)
    finished = {t for t, s in states.items() if s == "TERMINATED"}
    before = _journal(journal)
    results_before = {key: object_store.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
                      for key in object_store.keys(prefix) if key.endswith("/result.json")
                      and any(key.split("/")[-2].endswith(t) for t in finished)}

    shutil.rmtree(out)  # the driver ran on the lost cluster: its --out is gone too

    _, _, new_address = clusters.cluster()  # new temp dirs, new ports
    resumed = subprocess.run(_tune(new_address, space, out, storage, "--resume"), env=env, capture_output=True,
                             text=True, timeout=LIMIT_S)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "recovered it and spec.yaml" in resumed.stderr
    assert f"resuming {storage}/{NAME}" in resumed.stdout
    pd.testing.assert_frame_equal(_metrics(out), reference)

    after = _journal(journal)[len(before):]
    finished_dirs = {trial for trial, _, _ in before if any(trial.endswith(t) for t in finished)}
    assert finished_dirs and not {trial for trial, _, _ in after} & finished_dirs  # finished stay finished
    for key, body in results_before.items():
        assert object_store.client().get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    started = {trial: max(e for t, _, e in before if t == trial) for trial, _, _ in before}
    continued = set()
    for trial, _run, epoch in after:  # the first epoch each interrupted trial trains again
        if trial in started and trial not in continued:
            continued.add(trial)
            assert epoch >= started[trial], (trial, epoch, started[trial])  # the newest checkpoint's next
    assert any(started[trial] >= 2 for trial in continued), "no trial continued from a checkpoint"
    assert all(n <= 1 for n in _twice(before + after).values()), _twice(before + after)
