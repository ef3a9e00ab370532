"""CAER-S in its official layout.

    caers/train/<Class>/*   and   caers/test/<Class>/*
    Class: Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise

CAER-S ships whole video frames without face boxes. An optional ``caers/face_boxes.csv`` (header
``path,face_x,face_y,face_width,face_height``; ``path`` relative to ``caers/``, e.g.
``train/Happy/0001.png``) makes the loader crop those faces; frames without a box are resized whole.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sspa_ray.data._listing import (
    CROP_BOX,
    CROP_FULL,
    IMAGE_SUFFIXES,
    Listing,
    no_boxes,
    require_dir,
    require_nonempty,
)
from sspa_ray.errors import DataError
from sspa_ray.labels import CAERS_FOLDERS, CLASS_INDEX

SPLITS = ("train", "test")
# Images per split as the paper gives them (section 4.1.1: 65,983 in all): what --dry-run plans
# with when the data is not on this machine.
OFFICIAL_SIZES = {"train": 44_996, "test": 20_987}
BOX_FILE = "face_boxes.csv"
BOX_COLUMNS = ("path", "face_x", "face_y", "face_width", "face_height")


def read_boxes(dataset_dir: Path) -> dict[str, tuple[int, int, int, int]]:
    """The optional face-box file, as path -> (x, y, width, height); empty when there is none."""
    box_path = dataset_dir / BOX_FILE
    if not box_path.is_file():
        return {}
    boxes: dict[str, tuple[int, int, int, int]] = {}
    with open(box_path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        rows = csv.reader(handle)
        header = [cell.strip() for cell in next(rows, [])]
        for name in BOX_COLUMNS:
            if name not in header:
                raise DataError(f"{box_path}:1: missing column '{name}' in the header; expected {','.join(BOX_COLUMNS)}")
        col = [header.index(name) for name in BOX_COLUMNS]
        for row in rows:
            if not any(cell.strip() for cell in row):
                continue
            try:
                path = row[col[0]].strip()
                x, y, w, h = (int(row[i]) for i in col[1:])
            except (IndexError, ValueError):
                path, w, h = "", 0, 0
            if not path or w <= 0 or h <= 0:
                raise DataError(
                    f"{box_path}:{rows.line_num}: malformed row {','.join(row)[:120]!r}; expected "
                    "'<split>/<Class>/<file>,x,y,width,height' with a positive width and height"
                )
            boxes[path] = (x, y, w, h)
    return boxes


def read(dataset_dir: Path, split: str) -> Listing:
    split_dir = require_dir(require_dir(dataset_dir, "CAER-S") / split, f"CAER-S {split} split")
    face_boxes = read_boxes(dataset_dir)
    paths, labels, skipped = [], [], []
    for folder, name in sorted(CAERS_FOLDERS.items()):
        class_dir = require_dir(split_dir / folder, f"CAER-S class {name}")
        for file in sorted(class_dir.iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file() and not file.name.startswith("."):
                paths.append(f"{split}/{folder}/{file.name}")
                labels.append(CLASS_INDEX[name])
            else:
                skipped.append(file)
    problems = []
    extra = sorted(p.name for p in split_dir.iterdir() if p.name not in CAERS_FOLDERS and not p.name.startswith("."))
    if extra:
        problems.append(f"{split_dir}: ignored entries that are not class folders: {', '.join(extra[:5])}")
    if skipped:
        problems.append(f"{split_dir}: ignored {len(skipped)} non-image entries, e.g. {skipped[0]}")
    boxes = no_boxes(len(paths))
    for i, path in enumerate(paths):
        if path in face_boxes:
            boxes[i] = face_boxes[path]
    listed = set(paths)
    unused = [p for p in face_boxes if p.startswith(f"{split}/") and p not in listed]
    if unused:
        problems.append(f"{dataset_dir / BOX_FILE}: {len(unused)} boxes name no {split} image, e.g. {unused[0]}")
    listing = Listing(
        dataset="caers",
        split=split,
        base=dataset_dir,
        paths=paths,
        labels=np.asarray(labels, dtype=np.int64),
        boxes=boxes,
        crop=CROP_BOX if face_boxes else CROP_FULL,
        problems=problems,
    )
    return require_nonempty(listing, split_dir)
