"""`--storage s3://…` end to end, against a real S3-compatible server (moto's server mode, which
checks credentials) on 127.0.0.1: the real `sspa-ray` console script, a real local Ray.

A fresh run with the endpoint in the URI's query, the same sweep SIGKILLed, its --out deleted and
resumed with the endpoint in AWS_ENDPOINT_URL (equal to the uninterrupted run), `report`, and the
store's problems as one line before Ray starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import BUCKET, process_tree, still_running

# make test spreads tests over two workers (pytest-xdist, --dist loadgroup); this module's tests share
# module-scoped runs, so they stay together on one worker.
pytestmark = pytest.mark.xdist_group("test_object_storage")

SSPA = [sys.executable, "-m", "sspa_ray.cli.main"]
NAME = "store"
SPACE = (f"name: {NAME}\nspace:\n  pam.alpha: {{grid: [1, 4]}}\nfixed:\n  data.synthetic_scale: 0.1\n"
         "  train.epochs: 4\n  train.selection_epochs: 1\n  model.pretrained: none\n")
METRICS = ["pam.alpha", "status", "accuracy", "macro_precision", "macro_recall", "macro_f1", "best.accuracy",
           "best.epoch", "epochs_done"]


def _space(tmp: Path) -> Path:
    path = tmp / "space.yaml"
    path.write_text(SPACE)
    return path


def _sspa(store, *argv, endpoint_env: bool = False, timeout: int = 600, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([*SSPA, *map(str, argv)], capture_output=True, text=True, timeout=timeout,
                          env=_env(store, endpoint_env), **popen)


def _env(store, endpoint_env: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(store.env)
    if endpoint_env:
        env["AWS_ENDPOINT_URL"] = store.endpoint
    return env


def _metrics(out: Path) -> pd.DataFrame:
    frame = pd.read_parquet(out / "results.parquet")
    return frame.sort_values("pam.alpha")[METRICS].reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(object_store, tmp_path_factory):
    """The sweep, uninterrupted, stored under a URI with the endpoint in its query string."""
    tmp = tmp_path_factory.mktemp("query")
    uri = object_store.query_uri("query")
    proc = _sspa(object_store, "tune", _space(tmp), "--out", tmp / "exp", "--storage", uri, "--max-concurrent", "1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return {"out": tmp / "exp", "uri": uri, "metrics": _metrics(tmp / "exp"), "stdout": proc.stdout}


def test_a_query_string_uri_runs_with_the_name_in_the_path_and_report_rerenders(object_store, reference):
    out, uri = reference["out"], reference["uri"]
    frame = reference["metrics"]
    assert len(frame) == 2 and (frame["status"] == "completed").all() and (frame["epochs_done"] == 4).all()
    stored = json.loads((out / "experiment.json").read_text())
    assert stored["storage"] == uri
    assert stored["experiment_path"] == uri.replace("/query?", f"/query/{NAME}?")  # the name in the path part
    keys = [key for key in object_store.keys() if not key.endswith("/")]  # pyarrow's folder markers aside
    assert keys and all(key.startswith(f"query/{NAME}/") for key in keys), keys[:10]
    assert sum(key.endswith("/metrics.json") for key in keys) == 2
    assert not any("endpoint_override" in key or ".sspa-ray-write-check" in key for key in keys)
    # Nothing of the experiment is written locally beside OUT: Ray's state is in the store.
    assert not (out / "ray").exists()

    table = (out / "table.md").read_text()
    (out / "table.md").unlink()
    proc = _sspa(object_store, "report", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "table.md").read_text() == table


def test_sigkill_then_resume_from_the_store_equals_the_uninterrupted_run(object_store, reference, tmp_path):
    """The endpoint from AWS_ENDPOINT_URL this time; the driver is SIGKILLed once the first trial
    stored a checkpoint, and --resume continues from the store."""
    out, uri = tmp_path / "exp", f"s3://{BUCKET}/killed"
    argv = ["tune", str(_space(tmp_path)), "--out", str(out), "--storage", uri, "--max-concurrent", "1"]
    log = tmp_path / "driver.log"
    with open(log, "w") as sink:
        driver = subprocess.Popen([*SSPA, *argv], stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                  env=_env(object_store, endpoint_env=True))
    tree: set[int] = set()
    try:
        deadline = time.monotonic() + 300
        while driver.poll() is None and time.monotonic() < deadline:
            tree |= process_tree(driver.pid)
            if any("/checkpoint_" in key for key in object_store.keys(f"killed/{NAME}/")):
                break
            time.sleep(0.3)
        assert driver.poll() is None, "the sweep ended before it could be killed: " + log.read_text()[-3000:]
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        assert still_running(tree - {driver.pid}) == {}
    finally:
        for pid in process_tree(driver.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not (out / "results.parquet").exists()
    # The driver's machine is gone with --out (a head node's disk): the store holds a copy of its plan.
    shutil.rmtree(out)

    resumed = _sspa(object_store, *argv, "--resume", endpoint_env=True)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert f"{out} had no experiment.json: recovered it and spec.yaml from {uri}/{NAME}" in resumed.stderr
    assert f"resuming {uri}/{NAME}" in resumed.stdout
    pd.testing.assert_frame_equal(_metrics(out), reference["metrics"])  # as if it had never been killed
    logs = [key for key in object_store.keys(f"killed/{NAME}/") if key.endswith("/train.log")]
    assert len(logs) == 2


def test_store_problems_are_one_line_naming_the_uri_before_ray_starts(object_store, tmp_path):
    space, out = _space(tmp_path), tmp_path / "exp"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nothing = probe.getsockname()[1]  # no server listens here
    good = object_store.query_uri("errors")
    cases = [
        (object_store.query_uri("x").replace(f"s3://{BUCKET}/", "s3://no-such-bucket/"), {},
         ["bucket 'no-such-bucket' does not exist", "aws s3 mb s3://no-such-bucket"]),
        (good, {"AWS_SECRET_ACCESS_KEY": "wrong"}, ["refused the credentials", "AWS_ACCESS_KEY_ID"]),
        (good.replace(object_store.host_port, f"127.0.0.1:{nothing}"), {},
         [f"cannot reach http://127.0.0.1:{nothing}", "AWS_ENDPOINT_URL"]),
        (good.replace("scheme=http", "scheme=htp"), {}, ["pyarrow cannot read this URI", "s3://BUCKET/PATH"]),
    ]
    ray_tmp = tmp_path / "ray-tmp"
    for uri, env, needles in cases:
        proc = subprocess.run([*SSPA, "tune", str(space), "--out", str(out), "--storage", uri], capture_output=True,
                              text=True, timeout=300,
                              env={**_env(object_store, endpoint_env=False), **env, "RAY_TMPDIR": str(ray_tmp)})
        assert proc.returncode == 2, (uri, proc.stderr[-2000:])
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: --storage {uri}: "), proc.stderr
        assert all(needle in proc.stderr for needle in needles), proc.stderr
        assert not out.exists()
    assert not ray_tmp.exists() or not any(ray_tmp.iterdir())
    assert object_store.keys("errors/") == []
