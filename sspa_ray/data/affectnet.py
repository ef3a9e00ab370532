"""AffectNet (manually annotated part) in its official layout.

    affectnet/Manually_Annotated_file_lists/training.csv     (split ``train``)
    affectnet/Manually_Annotated_file_lists/validation.csv   (split ``val``)
    affectnet/Manually_Annotated_Images/<subDirectory_filePath>

Each CSV row gives an image, its face box, an expression code, and the face's valence and
arousal in [-1, 1]. Codes 0..6 map to canonical classes; codes 7..10 (contempt, none, uncertain,
non-face) are dropped and counted by reason, and so are rows whose valence or arousal lies outside
[-1, 1] (AffectNet writes -2 where there is none). Faces are cropped by their box, clipped to the
image.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sspa_ray.data._listing import CROP_BOX, Listing, require_dir, require_file, require_nonempty
from sspa_ray.errors import DataError
from sspa_ray.labels import AFFECTNET_CODES, AFFECTNET_DROPPED, CLASS_INDEX

SPLITS = ("train", "val")
# Rows of the official CSVs with codes 0..6, the ones this loader keeps (500 per class in val):
# what --dry-run plans with when the data is not on this machine. The paper (section 4.1.1) quotes
# 283,721 for the 7 classes, 180 fewer than training.csv holds.
OFFICIAL_SIZES = {"train": 283_901, "val": 3_500}
LIST_DIR = Path("Manually_Annotated_file_lists")
IMAGE_DIR = Path("Manually_Annotated_Images")
CSV_FILES = {"train": LIST_DIR / "training.csv", "val": LIST_DIR / "validation.csv"}
ANNOTATION_COLUMNS = (
    "subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
    "facial_landmarks", "expression", "valence", "arousal",
)
REQUIRED = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "expression", "valence", "arousal")
VA_OUT_OF_RANGE = "valence/arousal outside [-1, 1]"  # the reason such rows are dropped under


def _int(text: str) -> int:
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def _looks_like_data(row: list[str]) -> bool:
    try:
        [_int(cell) for cell in row[1:5]]
    except ValueError:
        return False
    return len(row) >= len(ANNOTATION_COLUMNS)


def _columns(first_row: list[str], csv_path: Path) -> tuple[dict[str, int], bool]:
    """Column positions, and whether the first row is a header.

    Some copies ship validation.csv without its header; a first row whose box fields are numbers
    is read as data in the official column order.
    """
    names = [cell.strip() for cell in first_row]  # tolerates "a, b, c" headers
    if "subDirectory_filePath" not in names and _looks_like_data(first_row):
        return {name: i for i, name in enumerate(ANNOTATION_COLUMNS)}, False
    for name in REQUIRED:
        if name not in names:
            raise DataError(f"{csv_path}:1: missing column '{name}' in the header; expected {', '.join(ANNOTATION_COLUMNS)}")
    return {name: names.index(name) for name in REQUIRED}, True


def read(dataset_dir: Path, split: str) -> Listing:
    require_dir(dataset_dir, "AffectNet")
    csv_path = require_file(dataset_dir / CSV_FILES[split], f"AffectNet {split} list")
    require_dir(dataset_dir / IMAGE_DIR, "AffectNet images")
    paths, labels, boxes, valence_arousal = [], [], [], []
    dropped = {reason: 0 for reason in (*AFFECTNET_DROPPED.values(), VA_OUT_OF_RANGE)}
    with open(csv_path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        rows = csv.reader(handle)
        first = next(rows, None)
        if first is None:
            raise DataError(f"{csv_path}: the file is empty; expected a header and one row per image")
        col, has_header = _columns(first, csv_path)
        pending = [] if has_header else [(1, first)]
        for number, row in _numbered(pending, rows):
            if not any(cell.strip() for cell in row):
                continue
            where, shown = f"{csv_path}:{number}", ",".join(row)[:120]
            try:
                code = _int(row[col["expression"]])
            except (IndexError, ValueError):
                code = -1
            if not 0 <= code <= 10:
                raise DataError(f"{where}: malformed row {shown!r}; expected an integer expression code in 0..10")
            if code in AFFECTNET_DROPPED:  # dropped before its box is read: such rows may carry no face
                dropped[AFFECTNET_DROPPED[code]] += 1
                continue
            try:
                image = row[col["subDirectory_filePath"]].strip().lstrip("/")
                box = [_int(row[col[name]]) for name in ("face_x", "face_y", "face_width", "face_height")]
            except (IndexError, ValueError):
                image, box = "", [0, 0, 0, 0]
            if not image or box[2] <= 0 or box[3] <= 0:
                raise DataError(
                    f"{where}: malformed row {shown!r}; expected an image path and an integer face box "
                    "with a positive width and height"
                )
            try:
                va = (float(row[col["valence"]]), float(row[col["arousal"]]))
            except (IndexError, ValueError):
                raise DataError(
                    f"{where}: malformed row {shown!r}; expected a number for valence and for arousal "
                    "(in [-1, 1], or AffectNet's -2 for none)"
                ) from None
            if not (-1.0 <= va[0] <= 1.0 and -1.0 <= va[1] <= 1.0):  # NaN fails too
                dropped[VA_OUT_OF_RANGE] += 1
                continue
            paths.append(f"{IMAGE_DIR}/{image}")  # a string join: pathlib's costs 5 us a row, 1.4 s for all of AffectNet
            labels.append(CLASS_INDEX[AFFECTNET_CODES[code]])
            boxes.append(box)
            valence_arousal.append(va)
    listing = Listing(
        dataset="affectnet",
        split=split,
        base=dataset_dir,
        paths=paths,
        labels=np.asarray(labels, dtype=np.int64),
        boxes=np.asarray(boxes, dtype=np.int64).reshape(-1, 4),
        crop=CROP_BOX,
        dropped={reason: n for reason, n in dropped.items() if n},
        valence_arousal=np.asarray(valence_arousal, dtype=np.float32).reshape(-1, 2),
    )
    return require_nonempty(listing, csv_path)


def _numbered(pending, rows):
    """Rows with their line numbers in the file."""
    yield from pending
    for row in rows:
        yield rows.line_num, row
