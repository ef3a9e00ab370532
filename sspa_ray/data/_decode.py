"""Decoding one face: open, crop by its box (clipped to the image), resize to a square."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from sspa_ray.data._listing import Listing
from sspa_ray.data._progress import Progress
from sspa_ray.errors import DataError


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def decode_face(path: os.PathLike, box: tuple[int, int, int, int] | None, size: int) -> np.ndarray:
    """Return the face as uint8 [size, size, 3]. A missing or unreadable file is a DataError naming it."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            if box is None:
                left, top, right, bottom = 0, 0, width, height
            else:
                x, y, w, h = box
                left, top = max(x, 0), max(y, 0)
                right, bottom = min(x + w, width), min(y + h, height)
                if right - left < 1 or bottom - top < 1:
                    raise DataError(
                        f"face box {box} of {path} lies outside its {width}x{height} image; fix the box in the label file"
                    )
            # JPEG can decode at 1/2, 1/4 or 1/8 scale for almost nothing; ask for the smallest
            # scale that still leaves the face at least `size` pixels on its shorter side.
            shrink = min(right - left, bottom - top) / size
            if shrink >= 2:
                img.draft("RGB", (math.ceil(width / shrink), math.ceil(height / shrink)))
                sx, sy = img.size[0] / width, img.size[1] / height
                # Round inwards, so that no pixel from outside the box enters the crop.
                left, top = math.ceil(left * sx - 1e-6), math.ceil(top * sy - 1e-6)
                right, bottom = math.floor(right * sx + 1e-6), math.floor(bottom * sy + 1e-6)
            # Crop before resizing, so the resampling filter never reaches outside the box.
            face = img.convert("RGB").crop((left, top, right, bottom))
            return np.asarray(face.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"missing image {path}: restore it or remove its entry from the label file") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = _one_line(exc).replace(f" '{path}'", "").replace(f" {path}", "")  # PIL repeats the path
        raise DataError(f"corrupt image {path}: {reason}; replace it or remove its entry") from None


def decode_threads() -> int:
    """Decoder threads ($SSPA_DECODE_THREADS, else one per core up to 8).

    PIL releases the GIL while decoding and resizing, so threads scale with cores.
    """
    configured = os.environ.get("SSPA_DECODE_THREADS", "").strip()
    if configured:
        if not configured.isdigit() or int(configured) < 1:
            raise DataError(f"SSPA_DECODE_THREADS={configured!r} is invalid: expected a positive integer")
        return int(configured)
    return max(1, min(8, len(os.sched_getaffinity(0))))


def decode_listing(listing: Listing, size: int, *, label: str, progress: bool) -> Iterator[tuple[int, np.ndarray | DataError]]:
    """Decode every image of `listing` in order, yielding (index, face) or (index, the DataError)."""

    def work(i: int) -> np.ndarray | DataError:
        try:
            return decode_face(listing.base / listing.paths[i], listing.box(i), size)
        except DataError as exc:
            return exc

    chunk = 512  # bounded number of decoded faces in flight
    with Progress(len(listing), label, progress) as bar, ThreadPoolExecutor(decode_threads()) as pool:
        for start in range(0, len(listing), chunk):
            indices = range(start, min(start + chunk, len(listing)))
            for i, result in zip(indices, pool.map(work, indices), strict=True):
                bar.update()
                yield i, result
