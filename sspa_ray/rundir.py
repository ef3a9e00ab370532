"""Run folders are never silently overwritten: one rule for `train` and for experiments."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

from sspa_ray.errors import RunDirError
from sspa_ray.outputs import CONFIG_FILE


def check_new_run_dir(path: Path, *, marker: str, overwrite: bool, what: str = "run") -> None:
    """Raise RunDirError unless `path` may hold a new run; changes nothing.

    A non-empty folder needs `overwrite`, and even then it is deleted only when it holds `marker`
    (the file by which sspa-ray recognises its own runs; `what` names them in the message).
    """
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {path} is a file: give a directory")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        reason = os.strerror(errno.ENOTDIR if not existing.is_dir() else errno.EACCES)
        raise RunDirError(f"--out {path} is not writable ({reason}); choose another directory")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise RunDirError(f"--out {path} already exists: add --resume to continue it or --overwrite to replace it")
        if not (path / marker).is_file():
            raise RunDirError(f"--overwrite {path}: refusing to delete a folder that is not an sspa-ray {what} ({marker} is missing)")


def prepare_new_run_dir(path: Path, *, marker: str, overwrite: bool, what: str = "run") -> None:
    """Create `path` for a new run (replacing an old run with `overwrite`) and check it is writable."""
    check_new_run_dir(path, marker=marker, overwrite=overwrite, what=what)
    if path.is_dir() and any(path.iterdir()):
        shutil.rmtree(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise RunDirError(f"--out {path} is not writable ({exc.strerror}); choose another directory") from None


def read_run_config(run_dir: Path) -> dict:
    """The flat config a `train` run folder was started with (its CONFIG_FILE, also its resume marker)."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise RunDirError(f"--resume {run_dir}: no run there ({CONFIG_FILE} is missing); start one with --out {run_dir}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path} is not valid JSON (line {exc.lineno}); restore it or start over with --overwrite") from None
