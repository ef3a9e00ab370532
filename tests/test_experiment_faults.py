"""Nothing lost in the Ray path: the real `sspa-ray tune` console script on a real local Ray.

Ctrl-C then --resume (with a truncated newest checkpoint on the way), SIGTERM to the driver and to
its group, a closed terminal, nohup, a full tmpfs, another cluster
named by RAY_ADDRESS, loopback-only sockets, and the errors that must come before Ray starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import mount_tmpfs, process_tree, processes, still_running

from sspa_ray.outputs import HANGUP_LOG_FILE

SSPA = [sys.executable, "-m", "sspa_ray.cli.main"]
METRICS = ["accuracy", "macro_precision", "macro_recall", "macro_f1", "best.accuracy", "best.epoch", "epochs_done"]
SPACE = ("name: faults\nspace:\n  pam.alpha: {grid: [1, 4]}\nfixed:\n  data.synthetic_scale: 0.1\n"
         "  train.epochs: 4\n  train.selection_epochs: 1\n  model.pretrained: none\n")


def _space(tmp: Path) -> Path:
    path = tmp / "space.yaml"
    path.write_text(SPACE)
    return path


def _tune(*argv, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([*SSPA, "tune", *map(str, argv)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _metrics(out: Path) -> pd.DataFrame:
    frame = pd.read_parquet(out / "results.parquet")
    return frame.sort_values("pam.alpha")[["pam.alpha", "status", *METRICS]].reset_index(drop=True)


def _checkpoints(experiment: Path) -> list[Path]:
    return sorted(experiment.glob("*/checkpoint_*/epoch_*"), key=lambda p: (p.parent.parent.name, p.name))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    proc = _tune(_space(tmp), "--out", tmp / "exp", "--max-concurrent", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _metrics(tmp / "exp")


def _interrupt_when(driver: subprocess.Popen, ready, sig=signal.SIGINT, limit_s=300, group=True) -> None:
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


def test_ctrl_c_exits_130_with_the_resume_line_and_resume_falls_back_past_a_truncated_checkpoint(reference, tmp_path):
    space, out = _space(tmp_path), tmp_path / "exp"
    argv = ["tune", str(space), "--out", str(out), "--max-concurrent", "1"]
    driver = subprocess.Popen([*SSPA, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    experiment = out / "ray" / "faults"
    # Interrupt once the second trial has stored two checkpoints: the first trial is finished.
    _interrupt_when(driver, lambda: len(_checkpoints(experiment)) >= 4 and
                    len({p.parent.parent for p in _checkpoints(experiment)}) == 2)
    stdout, stderr = driver.communicate()
    assert driver.returncode == 130, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip() and "WARNING" not in line and "INFO" not in line]
    assert lines[-1].startswith("interrupted: SIGINT: 1 of 2 trials finished"), stderr[-3000:]
    assert lines[-1].endswith(f"continue with: {shlex.join(['sspa-ray', *argv, '--resume'])}"), lines[-1]
    assert "Tuner.restore" not in stdout + stderr and "Traceback" not in stderr
    assert "Configuration for experiment" not in stdout and "tensorboard --logdir" not in stdout  # Tune's own output
    assert not (out / "results.parquet").exists()

    # Cut the newest checkpoint of the unfinished trial short, as a full disk or a crash might.
    unfinished = sorted({p.parent.parent for p in _checkpoints(experiment)}, key=lambda d: d.name)[-1]
    newest = [p for p in _checkpoints(experiment) if p.parent.parent == unfinished][-1]
    state = newest / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])

    resumed = subprocess.run([*SSPA, *argv, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{newest.name}: sha256 mismatch" in resumed.stdout, resumed.stdout[-3000:]  # said on the terminal
    pd.testing.assert_frame_equal(_metrics(out), reference)  # bit-identical to the uninterrupted run
    log = (unfinished / "train.log").read_text()
    assert log.count("trial ") >= 2 and "epoch 1/4" in log, log  # the log from before the kill stays
    assert "starting from epoch 1" not in log


@pytest.mark.parametrize("group", [False, True], ids=["kill-PID", "kill-PGID"])
def test_sigterm_exits_143_with_the_resume_line_and_leaves_no_ray_process(tmp_path, group):
    """`kill PID`, and `kill -TERM -PGID`, which also reaches every process in the command's group:
    the local Ray's processes run in their own sessions, so the driver still stops cleanly."""
    space, out = _space(tmp_path), tmp_path / "exp"
    argv = ["tune", str(space), "--out", str(out), "--max-concurrent", "1"]
    driver = subprocess.Popen([*SSPA, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    tree: set[int] = set()

    def ready() -> bool:
        tree.update(process_tree(driver.pid))
        return len(_checkpoints(out / "ray" / "faults")) >= 1

    _interrupt_when(driver, ready, sig=signal.SIGTERM, group=group)
    _, stderr = driver.communicate()
    assert driver.returncode == 143 and "interrupted: SIGTERM" in stderr and "--resume" in stderr, stderr[-3000:]
    assert "Failed to connect to GCS" not in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert len(tree) > 5 and still_running(tree) == {}


def _drain(fd: int, stop: threading.Event) -> None:
    """Read a terminal's output so that the command never blocks on a full pty buffer."""
    while not stop.is_set():
        if select.select([fd], [], [], 0.2)[0]:
            with contextlib.suppress(OSError):
                os.read(fd, 65536)


def test_a_closed_terminal_stops_resumably_and_resume_matches_the_uninterrupted_run(reference, tmp_path):
    """The command runs in a real pseudo-terminal. Closing it hangs the terminal up (the kernel sends
    SIGHUP to its session leader, and writing to it fails from then on), and the shell sends SIGHUP
    to its job's process group: the run stops resumably, says so in hangup.log, and --resume ends
    with the uninterrupted run's metrics."""
    space, out = _space(tmp_path), tmp_path / "exp"
    argv = ["tune", str(space), "--out", str(out), "--max-concurrent", "1"]
    terminal, command_side = os.openpty()

    def as_a_shell_starts_it() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)  # the suite itself may run under nohup
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the pty becomes its controlling terminal

    driver = subprocess.Popen([*SSPA, *argv], stdin=command_side, stdout=command_side, stderr=command_side,
                              start_new_session=True, preexec_fn=as_a_shell_starts_it)
    os.close(command_side)
    stop = threading.Event()
    reader = threading.Thread(target=_drain, args=(terminal, stop), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None and len(_checkpoints(out / "ray" / "faults")) < 2:
        time.sleep(0.3)
    assert driver.poll() is None, "the experiment ended before the terminal closed"
    stop.set()
    reader.join()
    os.close(terminal)  # the window closes
    os.killpg(driver.pid, signal.SIGHUP)  # the shell hangs up its jobs
    driver.wait(timeout=120)
    assert driver.returncode == 129, driver.returncode
    said = (out / HANGUP_LOG_FILE).read_text()
    assert "interrupted: SIGHUP" in said and f"{shlex.join(['sspa-ray', *argv, '--resume'])}" in said, said[-3000:]

    resumed = subprocess.run([*SSPA, *argv, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    pd.testing.assert_frame_equal(_metrics(out), reference)


def test_under_nohup_a_hangup_changes_nothing(reference, tmp_path):
    space, out = _space(tmp_path), tmp_path / "exp"
    driver = subprocess.Popen([*SSPA, "tune", str(space), "--out", str(out), "--max-concurrent", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                              preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))  # as nohup does
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None and not _checkpoints(out / "ray" / "faults"):
        time.sleep(0.3)
    assert driver.poll() is None, "the experiment ended before the hangup"
    os.killpg(driver.pid, signal.SIGHUP)
    _, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 0, stderr[-3000:]
    pd.testing.assert_frame_equal(_metrics(out), reference)


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
    space, out = _space(tmp_path), tmp_path / "exp"
    env = {**os.environ, "RAY_ADDRESS": address}
    driver = subprocess.Popen([*SSPA, "tune", str(space), "--out", str(out), "--set", "train.epochs=2"],
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
            ([_space(tmp_path), "--dashboard-port", port], f"--dashboard-port {port} is already in use"),
        ]
        for argv, needle in cases:
            out = tmp_path / "exp"
            proc = _tune(*argv, "--out", out, env=env)
            assert proc.returncode == 2, (argv, proc.stderr[-2000:])
            assert proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr
            assert not out.exists()
        # A dry run starts no Ray, so the busy port is no reason to refuse it.
        proc = _tune(_space(tmp_path), "--dashboard-port", port, "--out", tmp_path / "exp", "--dry-run",
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


def test_a_full_disk_is_one_line_and_resume_finishes_once_there_is_space(reference, tmp_path):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "1200k")  # a real tmpfs as --out, too small for all checkpoints
    try:
        out = disk / "exp"
        argv = [_space(tmp_path), "--out", out, "--max-concurrent", "1"]
        proc = _tune(*argv)
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "No space left on device" in errors[0] and "MiB" in errors[0], proc.stderr
        assert str(out) in errors[0] and errors[0].endswith("--resume")
        assert "Traceback" not in proc.stderr and "Trial task failed" not in proc.stderr, proc.stderr[-3000:]
        for state in (out / "ray" / "faults").glob("experiment_state-*.json"):
            json.loads(state.read_text())  # never truncated
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        resumed = _tune(*argv, "--resume")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        pd.testing.assert_frame_equal(_metrics(out), reference)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
