"""Decode once per node: a uint8 [N, H, W, 3] .npy per (dataset, split, size, crop, file list).

Concurrent trials on one node share the cache safely. The first one to arrive takes an fcntl
lock, decodes into a temporary file and renames it into place atomically; the others wait on the
lock and then memory-map the finished file. A sweep of 50 trials decodes each image once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from sspa_ray.data._decode import decode_listing
from sspa_ray.data._listing import Listing
from sspa_ray.errors import DataError

FORMAT_VERSION = 1  # bump when the decoding or cropping changes the cached pixels

# Images this process has decoded into a cache; tests and benchmarks read it to see cache hits.
decoded_images = 0


def cache_dir() -> Path:
    return Path(os.environ.get("SSPA_CACHE_DIR") or "~/.cache/sspa-ray").expanduser()


@contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive fcntl lock on `lock_path` (created if needed) across processes."""
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a")
    except OSError as exc:
        raise DataError(
            f"cannot write the cache under {lock_path.parent}: {exc.strerror}; set SSPA_CACHE_DIR to a writable folder"
        ) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cache_key(listing: Listing, size: int) -> str:
    """A hash of everything that decides the cached pixels, including each file's size and mtime."""
    digest = hashlib.sha256(
        f"v{FORMAT_VERSION}\n{listing.dataset}\n{listing.split}\n{size}\n{listing.crop}\n".encode()
    )
    # Every trial computes this key, so it runs on plain strings: pathlib's joins cost 3x the
    # stat calls themselves (0.6 s for the 23,690 rows of the synthetic aux list).
    base = str(listing.base)
    for rel, box in zip(listing.paths, listing.boxes.tolist(), strict=True):
        path = os.path.join(base, rel)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            raise DataError(f"missing image {path}: restore it or remove its entry from the label file") from None
        digest.update(f"{rel}\t{stat.st_size}\t{stat.st_mtime_ns}\t{box}\n".encode())
    return digest.hexdigest()[:20]


def cache_path(listing: Listing, size: int) -> Path:
    name = f"{listing.dataset}-{listing.split}-{size}px-{cache_key(listing, size)}.npy"
    return cache_dir() / "images" / name


def cached_images(listing: Listing, size: int, *, progress: bool = True) -> np.ndarray:
    """The split's faces as a read-only memory-mapped uint8 [N, size, size, 3], decoded at most once."""
    path = cache_path(listing, size)
    images = _open(path, len(listing), size)
    if images is not None:
        return images
    with locked(path.with_suffix(".lock")):
        images = _open(path, len(listing), size)  # another process may have built it while we waited
        if images is None:
            _build(listing, size, path, progress)
            images = _open(path, len(listing), size)
    if images is None:
        raise DataError(f"the image cache {path} could not be read back after building it; check the disk")
    return images


def _open(path: Path, n: int, size: int) -> np.ndarray | None:
    try:
        images = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None  # absent, or torn by a crash of an older version: rebuild
    return images if images.shape == (n, size, size, 3) and images.dtype == np.uint8 else None


def _build(listing: Listing, size: int, path: Path, progress: bool) -> None:
    global decoded_images
    for stale in path.parent.glob(f"{path.name}.tmp-*"):  # left by a builder that crashed; we hold the lock
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(listing), size, size, 3))
        _reserve(tmp)
        label = f"decoding {listing.dataset}/{listing.split} at {size}px"
        for i, face in decode_listing(listing, size, label=label, progress=progress):
            if isinstance(face, DataError):
                raise face
            out[i] = face
            decoded_images += 1
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _reserve(path: Path) -> None:
    """Allocate the whole file now: a full disk is then a clear error, not a SIGBUS mid-build."""
    needed = path.stat().st_size
    with open(path, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, needed)
        except OSError as exc:
            raise DataError(
                f"cannot allocate {needed / 2**30:.1f} GiB for the image cache in {path.parent}: {exc.strerror}; "
                "free disk space or set SSPA_CACHE_DIR to a larger disk"
            ) from None
