"""What a dataset reader hands to the cache: the files of one split, their labels and face boxes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sspa_ray.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

# Crop policies; each is part of the cache key because it changes the cached pixels.
CROP_ALIGNED = "aligned"  # the image is already an aligned face: resize it whole
CROP_BOX = "box"          # crop each face by its annotated box, clipped to the image
CROP_FULL = "full"        # no box is known: resize the whole frame


@dataclass
class Listing:
    """One split of one dataset, before any pixel is decoded."""

    dataset: str
    split: str
    base: Path                 # the dataset folder (DIR/<dataset>); `paths` are relative to it
    paths: list[str]
    labels: np.ndarray         # int64 [N], canonical class indices
    boxes: np.ndarray          # int64 [N, 4] face boxes (x, y, width, height); a row of -1 = no box
    crop: str                  # crop policy, one of CROP_*
    dropped: dict[str, int] = field(default_factory=dict)   # rows left out on purpose, by reason
    problems: list[str] = field(default_factory=list)       # things a user should look at; not fatal
    valence_arousal: np.ndarray | None = None  # float32 [N, 2] in [-1, 1] where the dataset has them (AffectNet)

    def __len__(self) -> int:
        return len(self.paths)

    def box(self, i: int) -> tuple[int, int, int, int] | None:
        row = self.boxes[i]
        return None if row[0] < 0 else (int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def no_boxes(n: int) -> np.ndarray:
    return np.full((n, 4), -1, dtype=np.int64)


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"missing folder {path} ({what}); check --data-root / SSPA_DATA_ROOT and the dataset layout")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"missing file {path} ({what}); check --data-root / SSPA_DATA_ROOT and the dataset layout")
    return path


def require_nonempty(listing: Listing, source: Path) -> Listing:
    if not listing.paths:
        raise DataError(f"{source}: no usable images for the {listing.split} split of {listing.dataset}")
    return listing
