"""Nothing lost in the Ray path: the real `sspa-ray tune` console script on a real local Ray, interrupted
and resumed to the metrics of an uninterrupted run: Ctrl-C (with a truncated newest checkpoint on the
way), a closed terminal, nohup, a full tmpfs."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shlex
import signal
import subprocess
import termios
import threading
import time

import pandas as pd
import pytest
from _fault_runs import SSPA, checkpoints, faults_space, interrupt_when, metrics, tune, uninterrupted
from conftest import mount_tmpfs

from sspa_ray.outputs import HANGUP_LOG_FILE

# make test spreads tests over two workers (pytest-xdist, --dist loadgroup); this module's tests share
# module-scoped runs, so they stay together on one worker.
pytestmark = pytest.mark.xdist_group("test_experiment_faults")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """What the uninterrupted sweep ends with: the engine's own run of each configuration (a real
    `sspa-ray tune` ends with the same rows; test_object_storage runs that sweep uninterrupted)."""
    return uninterrupted(tmp_path_factory.mktemp("reference"))



def test_ctrl_c_exits_130_with_the_resume_line_and_resume_falls_back_past_a_truncated_checkpoint(reference, tmp_path):
    space, out = faults_space(tmp_path), tmp_path / "exp"
    argv = ["tune", str(space), "--out", str(out), "--max-concurrent", "1"]
    driver = subprocess.Popen([*SSPA, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    experiment = out / "ray" / "faults"
    # Interrupt once the second trial has stored two checkpoints: the first trial is finished.
    interrupt_when(driver, lambda: len(checkpoints(experiment)) >= 4 and
                    len({p.parent.parent for p in checkpoints(experiment)}) == 2)
    stdout, stderr = driver.communicate()
    assert driver.returncode == 130, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip() and "WARNING" not in line and "INFO" not in line]
    assert lines[-1].startswith("interrupted: SIGINT: 1 of 2 trials finished"), stderr[-3000:]
    assert lines[-1].endswith(f"continue with: {shlex.join(['sspa-ray', *argv, '--resume'])}"), lines[-1]
    assert "Tuner.restore" not in stdout + stderr and "Traceback" not in stderr
    assert "Configuration for experiment" not in stdout and "tensorboard --logdir" not in stdout  # Tune's own output
    assert not (out / "results.parquet").exists()

    # Cut the newest checkpoint of the unfinished trial short, as a full disk or a crash might.
    unfinished = sorted({p.parent.parent for p in checkpoints(experiment)}, key=lambda d: d.name)[-1]
    newest = [p for p in checkpoints(experiment) if p.parent.parent == unfinished][-1]
    state = newest / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])

    resumed = subprocess.run([*SSPA, *argv, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{newest.name}: sha256 mismatch" in resumed.stdout, resumed.stdout[-3000:]  # said on the terminal
    pd.testing.assert_frame_equal(metrics(out), reference)  # bit-identical to the uninterrupted run
    log = (unfinished / "train.log").read_text()
    assert log.count("trial ") >= 2 and "epoch 1/4" in log, log  # the log from before the kill stays
    assert "starting from epoch 1" not in log


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
    space, out = faults_space(tmp_path), tmp_path / "exp"
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
    while time.monotonic() < deadline and driver.poll() is None and len(checkpoints(out / "ray" / "faults")) < 2:
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
    pd.testing.assert_frame_equal(metrics(out), reference)


def test_under_nohup_a_hangup_changes_nothing(reference, tmp_path):
    space, out = faults_space(tmp_path), tmp_path / "exp"
    driver = subprocess.Popen([*SSPA, "tune", str(space), "--out", str(out), "--max-concurrent", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                              preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))  # as nohup does
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None and not checkpoints(out / "ray" / "faults"):
        time.sleep(0.3)
    assert driver.poll() is None, "the experiment ended before the hangup"
    os.killpg(driver.pid, signal.SIGHUP)
    _, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 0, stderr[-3000:]
    pd.testing.assert_frame_equal(metrics(out), reference)


def test_a_full_disk_is_one_line_and_resume_finishes_once_there_is_space(reference, tmp_path):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "1200k")  # a real tmpfs as --out, too small for all checkpoints
    try:
        out = disk / "exp"
        argv = [faults_space(tmp_path), "--out", out, "--max-concurrent", "1"]
        proc = tune(*argv)
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "No space left on device" in errors[0] and "MiB" in errors[0], proc.stderr
        assert str(out) in errors[0] and errors[0].endswith("--resume")
        assert "Traceback" not in proc.stderr and "Trial task failed" not in proc.stderr, proc.stderr[-3000:]
        for state in (out / "ray" / "faults").glob("experiment_state-*.json"):
            json.loads(state.read_text())  # never truncated
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        resumed = tune(*argv, "--resume")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        pd.testing.assert_frame_equal(metrics(out), reference)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
