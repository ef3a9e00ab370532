"""Test-only fault points, driven by environment variables (unset in normal runs: no effect).

``SSPA_TEST_KILL_AT`` makes the process SIGKILL itself at one point, to prove that a run killed
at any moment resumes to the same result:

- ``mid_epoch:E``        halfway through the steps of epoch E (1-based);
- ``checkpoint_write:E`` while writing the checkpoint of epoch E: its data is on disk but the
                         checksum is not, and it has not been renamed into place;
- ``stage_switch``       after the last SS epoch's checkpoint, before the first PA step.

``SSPA_TEST_CRASH_AFTER_EPOCH=E`` with ``SSPA_TEST_CRASH_MARKER=PATH`` raises RuntimeError once,
after epoch E's checkpoint has been reported, if PATH does not exist (it is created first, so
the retried run goes through). The orchestration tests use it to exercise Ray's retries.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def kill_point(point: str, epoch: int | None = None) -> None:
    spec = os.environ.get("SSPA_TEST_KILL_AT")
    if not spec:
        return
    name, _, at = spec.partition(":")
    if name == point and (not at or (epoch is not None and int(at) == epoch)):
        os.kill(os.getpid(), signal.SIGKILL)


def crash_point(epoch: int) -> None:
    at, marker = os.environ.get("SSPA_TEST_CRASH_AFTER_EPOCH"), os.environ.get("SSPA_TEST_CRASH_MARKER")
    if not at or not marker or int(at) != epoch or Path(marker).exists():
        return
    Path(marker).touch()
    raise RuntimeError(f"SSPA_TEST_CRASH_AFTER_EPOCH: injected failure after epoch {epoch}")
