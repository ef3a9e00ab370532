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

The Trainer asks `installed()` once: without these variables it gets None and its loop calls
nothing of this module.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

KILL_AT, CRASH_AFTER_EPOCH, CRASH_MARKER = "SSPA_TEST_KILL_AT", "SSPA_TEST_CRASH_AFTER_EPOCH", "SSPA_TEST_CRASH_MARKER"
CORRUPT_EPOCH = "SSPA_TEST_CORRUPT_EPOCH"


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

    def epoch_start(self, epoch: int, first_pa: bool) -> None:
        """Before 0-based `epoch` trains; `first_pa`: it is the first epoch of the PA stage."""
        if first_pa:
            kill_point("stage_switch")

    def halfway(self, epoch: int) -> None:
        """Halfway through the steps of 0-based `epoch`."""
        kill_point("mid_epoch", epoch + 1)

    def epoch_end(self, epochs_done: int) -> None:
        """After the checkpoint of the `epochs_done`-th epoch was written and reported."""
        crash_point(epochs_done)


def installed() -> FaultHooks | None:
    """The hooks when a test set one of the variables, else None (the normal run)."""
    return FaultHooks() if os.environ.get(KILL_AT) or os.environ.get(CRASH_AFTER_EPOCH) else None
