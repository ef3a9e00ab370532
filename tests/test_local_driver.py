"""The driver of a local run, the real `sspa-ray` console script: SIGTERM to it and to its group leaves
no Ray process, a local run ignores another cluster named by RAY_ADDRESS and listens on loopback only,
and the errors that must come before Ray starts leave no --out."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _fault_runs import SSPA, checkpoints, faults_space, interrupt_when, tune
from conftest import process_tree, processes, still_running


@pytest.mark.parametrize("group", [False, True], ids=["kill-PID", "kill-PGID"])
def test_sigterm_exits_143_with_the_resume_line_and_leaves_no_ray_process(tmp_path, group):
    """`kill PID`, and `kill -TERM -PGID`, which also reaches every process in the command's group:
    the local Ray's processes run in their own sessions, so the driver still stops cleanly."""
    space, out = faults_space(tmp_path), tmp_path / "exp"
    argv = ["tune", str(space), "--out", str(out), "--max-concurrent", "1"]
    driver = subprocess.Popen([*SSPA, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    tree: set[int] = set()

    def ready() -> bool:
        tree.update(process_tree(driver.pid))
        return len(checkpoints(out / "ray" / "faults")) >= 1

    interrupt_when(driver, ready, sig=signal.SIGTERM, group=group)
    _, stderr = driver.communicate()
    assert driver.returncode == 143 and "interrupted: SIGTERM" in stderr and "--resume" in stderr, stderr[-3000:]
    assert "Failed to connect to GCS" not in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert len(tree) > 5 and still_running(tree) == {}


@pytest.fixture
def other_cluster(tmp_path):
    """A `ray start --head` cluster on free ports, stopped by its own process ids (never `ray stop`)."""
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    temp_dir = Path("/tmp") / f"sspa-other-{os.getpid()}"
    ray_bin = Path(sys.executable).parent / "ray"
    start = subprocess.run([str(ray_bin), "start", "--head", f"--port={ports[0]}", "--num-cpus=1",
                            "--include-dashboard=false", f"--temp-dir={temp_dir}", "--disable-usage-stats",
                            f"--metrics-export-port={ports[1]}"],
                           capture_output=True, text=True, timeout=180)
    # Its daemons all name its private temp dir on their command lines: those are the pids to stop.
    started = [pid for pid, cmdline in processes().items() if str(temp_dir) in cmdline]
    try:
        assert start.returncode == 0, start.stderr[-2000:]
        yield f"127.0.0.1:{ports[0]}", ports[0]
    finally:
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _listening_outside_loopback(pids: set[int]) -> set[tuple[str, int]]:
    """Listening TCP sockets of `pids` on any address but loopback, from /proc/net/tcp and tcp6."""
    inodes = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        inodes[link[8:-1]] = pid
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # kernel order per 32-bit word
            ip = ipaddress.ip_address(words)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            if not ip.is_loopback:
                found.add((str(ip), int(port, 16)))
    return found


def test_a_local_run_ignores_ray_address_and_listens_on_loopback_only(other_cluster, tmp_path):
    address, gcs_port = other_cluster
    space, out = faults_space(tmp_path), tmp_path / "exp"
    env = {**os.environ, "RAY_ADDRESS": address}
    driver = subprocess.Popen([*SSPA, "tune", str(space), "--out", str(out), "--set", "train.epochs=2", "--max-concurrent", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              start_new_session=True)
    exposed, local_ray = set(), set()
    try:
        deadline = time.monotonic() + 300
        while driver.poll() is None and time.monotonic() < deadline:
            tree = process_tree(driver.pid)
            exposed |= _listening_outside_loopback(tree)
            commands = processes()
            if any("raylet" in commands.get(pid, "") for pid in tree):
                local_ray.add(True)
            time.sleep(0.5)
        stdout, stderr = driver.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 0, stderr[-3000:]
    assert local_ray, "no raylet of its own: the run joined another cluster"
    assert "Connecting to existing" not in stderr and str(gcs_port) not in stdout + stderr
    assert exposed == set(), exposed


def test_schedule_and_bad_input_errors_are_one_line_before_ray_and_leave_no_out(tmp_path):
    ray_tmp = tmp_path / "ray-tmp"
    env = {"RAY_TMPDIR": str(ray_tmp)}
    space = tmp_path / "asha.yaml"
    space.write_text("search: random\nnum_samples: 2\nscheduler: asha\ngrace_period: 8\n"
                     "space:\n  pam.alpha: {uniform: [1, 5]}\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = [
            ([space, "--set", "train.epochs=3", "--set", "train.selection_epochs=1"], "grace_period=8 exceeds"),
            ([space, "--set", "train.epochs=10", "--set", "train.selection_epochs=9"], "falls in the SS stage"),
            ([faults_space(tmp_path), "--dashboard-port", port], f"--dashboard-port {port} is already in use"),
        ]
        for argv, needle in cases:
            out = tmp_path / "exp"
            proc = tune(*argv, "--out", out, env=env)
            assert proc.returncode == 2, (argv, proc.stderr[-2000:])
            assert proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr
            assert not out.exists()
        # A dry run starts no Ray, so the busy port is no reason to refuse it.
        proc = tune(faults_space(tmp_path), "--dashboard-port", port, "--out", tmp_path / "exp", "--dry-run",
                     "--throughput", "100", env=env)
        assert proc.returncode == 0 and "trials" in proc.stdout, proc.stderr[-2000:]
    assert not ray_tmp.exists() or not any(ray_tmp.iterdir())


def test_a_failed_train_leaves_no_out_and_the_corrected_command_runs(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--target", "rafdb", "--data-root", str(tmp_path / "nowhere"), "--out", str(out)]
    proc = subprocess.run([*SSPA, *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "nowhere" in proc.stderr and not out.exists(), proc.stderr
    proc = subprocess.run([*SSPA, "train", "--out", str(out), "--set", "data.synthetic_scale=0.1",
                           "--set", "train.epochs=1", "--set", "train.selection_epochs=1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


