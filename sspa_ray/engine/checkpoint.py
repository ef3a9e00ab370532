"""Atomic, checksummed checkpoints and atomic file writes.

A checkpoint is a directory ``checkpoints/epoch_NNNN/`` holding ``state.pt`` and its SHA-256 in
``state.pt.sha256``. It is written under a temporary name, fsynced, renamed into place and the
parent directory fsynced, so a crash leaves either the old set or the new one, never a torn
file under a final name. On resume the newest checkpoint whose checksum matches is used; a
corrupt one is reported and skipped.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from sspa_ray.engine import _faults

STATE, CHECKSUM = "state.pt", "state.pt.sha256"
_EPOCH_DIR = re.compile(r"^epoch_(\d{4,})$")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` so that readers see the old or the new content, nothing else."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old or the new content, nothing else."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        _write_synced(tmp, data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def checkpoint_dir(root: Path, epoch: int) -> Path:
    return Path(root) / f"epoch_{epoch:04d}"


def save_checkpoint(root: Path, epoch: int, state: dict) -> Path:
    """Write `state` as the checkpoint of `epoch` (1-based count of finished epochs)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(root, epoch)
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    _write_synced(tmp / STATE, _faults.corrupted(data, epoch))
    _faults.kill_point("checkpoint_write", epoch)
    _write_synced(tmp / CHECKSUM, f"{hashlib.sha256(data).hexdigest()}  {STATE}\n".encode())
    _fsync_dir(tmp)
    if final.exists():  # a re-run of an epoch after falling back past a corrupt checkpoint
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    return final


class CorruptCheckpoint(Exception):
    """A checkpoint whose files are missing, truncated or fail their SHA-256 check."""


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint directory after verifying its checksum (raises CorruptCheckpoint)."""
    path = Path(path)
    try:
        data = (path / STATE).read_bytes()
        expected = (path / CHECKSUM).read_text().split()[0]
    except (OSError, IndexError) as exc:
        raise CorruptCheckpoint(f"{path.name}: incomplete ({exc.__class__.__name__})") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise CorruptCheckpoint(f"{path.name}: sha256 mismatch")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _epoch_dirs(root: Path) -> list[tuple[int, Path]]:
    if not Path(root).is_dir():
        return []
    found = [(int(m.group(1)), p) for p in Path(root).iterdir() if (m := _EPOCH_DIR.match(p.name)) and p.is_dir()]
    return sorted(found, reverse=True)


def latest_checkpoint(root: Path, log: Callable[[str], None] = print) -> tuple[Path, dict] | None:
    """The newest checkpoint in `root` whose checksum holds, with its state; None if there is none."""
    for _, path in _epoch_dirs(root):
        try:
            return path, load_checkpoint(path)
        except CorruptCheckpoint as exc:
            log(f"checkpoint {exc}; falling back to an older one")
    return None


def prune_checkpoints(root: Path, keep: int = 2) -> None:
    """Delete all but the `keep` newest checkpoints, and temporaries left by killed writers."""
    for _, path in _epoch_dirs(root)[keep:]:
        shutil.rmtree(path, ignore_errors=True)
    for tmp in Path(root).glob(".epoch_*.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
