"""Shared test set-up: an isolated cache, no usage stats, single-threaded torch; a real S3 server."""

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

# Set before anything imports sspa_ray or ray, so every test and every subprocess it starts
# uses a private cache and never phones home. pytest-xdist's workers inherit the controller's.
PRIVATE_CACHE_PREFIX = "sspa-test-cache-"
if "SSPA_CACHE_DIR" not in os.environ:
    os.environ["SSPA_CACHE_DIR"] = tempfile.mkdtemp(prefix=PRIVATE_CACHE_PREFIX)
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _small_builtin_backbone():
    """The synthetic target's default backbone (model.pretrained=synthetic-faces) from a small
    pretraining, put in the suite's private cache where the default recipe's file belongs.

    The default recipe trains for about a minute of CPU. The tests that start from it check what a
    run does and writes, not how well it learns, and they paid that minute in whichever ran first,
    while the other worker waited on the cache's lock. They still take the built-in path (the
    driver finds the file in the cache before Ray starts, the trials load it); tests/test_pretrain.py
    builds real recipes, under the lock, in caches of its own. A cache given in SSPA_CACHE_DIR is
    left alone: a small backbone must never land in a user's cache.
    """
    if not Path(os.environ["SSPA_CACHE_DIR"]).name.startswith(PRIVATE_CACHE_PREFIX):
        return
    from sspa_ray.defaults import make_config
    from sspa_ray.engine import pretrain

    default = pretrain.recipe_for(make_config("synthetic"))
    small = dataclasses.replace(default, identities=6, per_identity=5, held_back=1, epochs=1, batch_size=8)
    pretrain.ensure(small, path=pretrain.cached_path(default), progress=False)


def _start_local_ray() -> None:
    """A local Ray of 2 CPUs in this process, configured as sspa-ray's own local Rays are."""
    import ray

    from sspa_ray.orchestration.cluster import LOCAL_RAY_CONFIG

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _system_config=LOCAL_RAY_CONFIG)


@pytest.fixture(scope="module")
def local_ray(_session_ray):
    """The session's local Ray (2 CPUs, no dashboard; each pytest-xdist worker is a session), started by
    the first test that needs it and shared by every module after it: each start and stop cost about
    4.5 s here. The tests marked own_ray replace it; the next module that needs it starts it again."""
    import ray

    if not ray.is_initialized():
        _start_local_ray()


@pytest.fixture(scope="session")
def _session_ray():
    """Shuts the session's local Ray down at the end of the session."""
    import ray

    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def own_local_ray():
    """A local Ray of the module's own (2 CPUs), for the tests marked own_ray that run TorchTrainer trials.

    Train V2's worker groups are placement groups. Once, a trial retried mid-fit left one CPU
    reserved in the shared session's raylet (a bundle prepared, never committed nor returned),
    and the next TorchTrainer test waited for it forever; a session of the module's own takes any
    such leftover with it, and the module's test that retries a Train trial runs last in it."""
    import ray

    ray.shutdown()
    _start_local_ray()
    yield
    ray.shutdown()


def _order(item) -> int:
    """Slow tests first: pytest-xdist hands out the xdist_group modules (the ones with more tests first),
    then the other tests in this order, so the workers end on short tests, together. A test that
    replaces the session's Ray without a fixture of its own (own_ray, not slow) runs after the tests
    of its module, which share that Ray."""
    if item.get_closest_marker("slow"):
        return 0
    return 2 if item.get_closest_marker("own_ray") else 1


def pytest_collection_modifyitems(items):
    items.sort(key=_order)


# ---- make test's grouping, checked: a module marked xdist_group runs on one pytest-xdist worker -----
# Its tests share module-scoped runs. pytest-xdist groups them by renaming each test's id, which pytest
# 9.2 ignores (pytest-xdist#1386): the marks are then dropped without a word, and every worker builds
# the module's runs again. The controller sees which worker ran each test and fails the session then.

_GROUPED_RAN_ON: dict[str, set[str]] = defaultdict(set)  # test module -> the workers that ran its tests


def pytest_runtest_logreport(report):
    worker = getattr(report, "node", None)  # set on the controller's copy of a worker's report
    if worker is not None and "xdist_group" in report.keywords:
        _GROUPED_RAN_ON[report.nodeid.split("::")[0]].add(worker.gateway.id)


def _split_groups() -> list[str]:
    return sorted(module for module, workers in _GROUPED_RAN_ON.items() if len(workers) > 1)


def pytest_terminal_summary(terminalreporter):
    if _split_groups():
        terminalreporter.write_line(
            f"error: the tests of {', '.join(_split_groups())} ran on several workers although marked xdist_group "
            "(pytest-xdist#1386): install the dev extra again (pip install -e '.[dev]'), which pins pytest below 9.2",
            red=True)


def pytest_sessionfinish(session):
    if _split_groups():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def mount_tmpfs(disk: Path, size: str) -> None:
    """Mount a real tmpfs of `size` at `disk` (needs the right to mount, as CI's root has), or skip."""
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")


def processes() -> dict[int, str]:
    """pid -> command line, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return found


def process_tree(root: int) -> set[int]:
    """`root` and all its descendants, from the parent ids in /proc/PID/stat."""
    parents = {}
    for pid in processes():
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[pid] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    tree, grew = {root}, True
    while grew:
        new = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= new
        grew = bool(new)
    return tree


def still_running(pids: set[int], wait_s: float = 30) -> dict[int, str]:
    """The processes of `pids` that run after up to `wait_s` seconds (zombies are not running)."""
    deadline = time.monotonic() + wait_s
    while True:
        running = {}
        for pid in pids:
            with contextlib.suppress(OSError, IndexError):
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    running[pid] = (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                                    .decode(errors="replace"))
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.5)


# ---- a real S3-compatible server: moto's server mode (the dev extra) --------------------------------

BUCKET = "sspa"


@dataclass
class ObjectStore:
    """A moto server on 127.0.0.1 that checks credentials: an IAM user's keys may use S3, others not."""
    endpoint: str                # http://127.0.0.1:PORT
    env: dict[str, str]          # the user's credentials and region; no endpoint (tests choose how to give it)

    @property
    def host_port(self) -> str:
        return self.endpoint.split("://", 1)[1]

    def query_uri(self, prefix: str) -> str:
        """s3://BUCKET/PREFIX with the endpoint in pyarrow's query parameters."""
        return f"s3://{BUCKET}/{prefix}?endpoint_override={self.host_port}&scheme=http"

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under `prefix` in the bucket."""
        client = self.client()
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.env["AWS_DEFAULT_REGION"],
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])


@pytest.fixture(scope="module")
def object_store(tmp_path_factory):
    """One moto server per module, stopped by its own process id. Credentials are enforced from the
    moment the bucket and an IAM user with S3 rights exist, so wrong keys are refused as by AWS."""
    import boto3

    tmp = tmp_path_factory.mktemp("s3")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    log = open(tmp / "moto.log", "w")
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert server.poll() is None and time.monotonic() < deadline, (tmp / "moto.log").read_text()
            time.sleep(0.2)
        setup = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "setup",
                 "aws_secret_access_key": "setup"}
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="sspa")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="sspa", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="sspa")["AccessKey"]
        boto3.client("s3", **setup).create_bucket(Bucket=BUCKET)
        # moto's switch for checking credentials on every later request.
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                                      headers={"Content-Type": "text/plain"}), timeout=10)
        env = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
               "AWS_DEFAULT_REGION": "us-east-1",
               # Never ask the EC2 metadata service (off this machine) or a user's ~/.aws for anything.
               "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(tmp / "none"),
               "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none")}
        yield ObjectStore(endpoint, env)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGKILL)
        server.wait()
        log.close()
