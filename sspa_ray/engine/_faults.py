"""Test-only fault points, driven by environment variables (unset in normal runs: not installed).

``SSPA_TEST_KILL_AT`` makes the process SIGKILL itself at one point, to prove that a run killed
at any moment resumes to the same result:

- ``mid_epoch:E``        halfway through the steps of epoch E (1-based);
- ``checkpoint_write:E`` while writing the checkpoint of epoch E: its data is on disk but the
                         checksum is not, and it has not been renamed into place;
- ``stage_switch``       after the last SS epoch's checkpoint, before the first PA step.

``SSPA_TEST_CRASH_AFTER_EPOCH=E`` with ``SSPA_TEST_CRASH_MARKER=PATH`` raises RuntimeError once,
after epoch E's checkpoint has been reported, if PATH does not exist (it is created first, so
the retried run goes through). The orchestration tests use it to exercise Ray's retries.
``SSPA_TEST_CORRUPT_EPOCH=E`` (with the same marker) also writes epoch E's checkpoint cut in
half before that crash, as a full disk might, so that the retry must fall back past it.

``SSPA_TEST_EPOCH_JOURNAL=PATH`` appends ``RUN_DIR<TAB>EPOCH<TAB>PID`` to PATH when an epoch starts to
train, so that a test can count the epochs trained twice across processes and nodes (the trial's run
folder names its node's temp dir and its Tune trial folder) and see which process trained it.

``SSPA_TEST_EPOCH_HOLD=PATH`` makes every epoch after the first wait at its start (after its journal
line) while PATH exists. A test holds the trials of a sweep in flight, each with a checkpoint
reported, so that what it does next (kill a node, add one) cannot race a trial to its end.

The Trainer asks `installed()` once: without these variables it gets None and its loop calls
nothing of this module.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

KILL_AT, CRASH_AFTER_EPOCH, CRASH_MARKER = "SSPA_TEST_KILL_AT", "SSPA_TEST_CRASH_AFTER_EPOCH", "SSPA_TEST_CRASH_MARKER"
CORRUPT_EPOCH = "SSPA_TEST_CORRUPT_EPOCH"
EPOCH_JOURNAL, EPOCH_HOLD = "SSPA_TEST_EPOCH_JOURNAL", "SSPA_TEST_EPOCH_HOLD"


def kill_point(point: str, epoch: int | None = None) -> None:
    spec = os.environ.get(KILL_AT)
    if not spec:
        return
    name, _, at = spec.partition(":")
    if name == point and (not at or (epoch is not None and int(at) == epoch)):
        os.kill(os.getpid(), signal.SIGKILL)


def corrupted(data: bytes, epoch: int) -> bytes:
    """The checkpoint bytes to write for `epoch`: cut in half when a test asks, before its crash."""
    at, marker = os.environ.get(CORRUPT_EPOCH), os.environ.get(CRASH_MARKER)
    if not at or not marker or int(at) != epoch or Path(marker).exists():
        return data
    return data[: len(data) // 2]


def crash_point(epoch: int) -> None:
    at, marker = os.environ.get(CRASH_AFTER_EPOCH), os.environ.get(CRASH_MARKER)
    if not at or not marker or int(at) != epoch or Path(marker).exists():
        return
    Path(marker).touch()
    raise RuntimeError(f"{CRASH_AFTER_EPOCH}: injected failure after epoch {epoch}")


class FaultHooks:
    """The Trainer's calls at its epoch boundaries (and once halfway through an epoch's steps)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def epoch_start(self, epoch: int, first_pa: bool) -> None:
        """Before 0-based `epoch` trains; `first_pa`: it is the first epoch of the PA stage."""
        if journal := os.environ.get(EPOCH_JOURNAL):
            with open(journal, "a", encoding="utf-8") as sink:  # one short append: whole lines
                sink.write(f"{self.run_dir.resolve()}\t{epoch + 1}\t{os.getpid()}\n")
        if epoch and (hold := os.environ.get(EPOCH_HOLD)):
            while Path(hold).exists():
                time.sleep(0.1)
        if first_pa:
            kill_point("stage_switch")

    def halfway(self, epoch: int) -> None:
        """Halfway through the steps of 0-based `epoch`."""
        kill_point("mid_epoch", epoch + 1)

    def epoch_end(self, epochs_done: int) -> None:
        """After the checkpoint of the `epochs_done`-th epoch was written and reported."""
        crash_point(epochs_done)


def installed(run_dir: Path) -> FaultHooks | None:
    """The hooks of the run in `run_dir` when a test set one of the variables, else None (the normal run)."""
    wanted = any(os.environ.get(name) for name in (KILL_AT, CRASH_AFTER_EPOCH, EPOCH_JOURNAL, EPOCH_HOLD))
    return FaultHooks(run_dir) if wanted else None
