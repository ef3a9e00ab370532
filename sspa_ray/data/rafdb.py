"""RAF-DB (basic emotions) in its official layout.

    rafdb/EmoLabel/list_patition_label.txt   lines like ``train_00001.jpg 5`` (codes 1..7)
    rafdb/Image/aligned/train_00001_aligned.jpg

The distributed zip adds a ``basic/`` level (``rafdb/basic/EmoLabel/...``); both are accepted.
The split of an image is the prefix of its name (``train_`` or ``test_``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from sspa_ray.data._listing import CROP_ALIGNED, Listing, no_boxes, require_dir, require_nonempty
from sspa_ray.errors import DataError
from sspa_ray.labels import CLASS_INDEX, RAFDB_CODES

SPLITS = ("train", "test")
# Images per split of the official label file (basic emotions; the paper's section 4.1.1 too):
# what --dry-run plans with when the data is not on this machine.
OFFICIAL_SIZES = {"train": 12_271, "test": 3_068}
LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"  # sic: the official file name is misspelt
IMAGE_DIR = Path("Image") / "aligned"
_IMAGE_NAME = re.compile(r"^(train|test)_(\d+)\.jpg$")


def _level(dataset_dir: Path) -> Path:
    """The folder that holds EmoLabel/ and Image/: the dataset folder itself or its basic/ level."""
    require_dir(dataset_dir, "RAF-DB")
    for level in (dataset_dir, dataset_dir / "basic"):
        if (level / LABEL_FILE).is_file():
            return level
    raise DataError(
        f"missing file {dataset_dir / LABEL_FILE} (RAF-DB labels; {dataset_dir / 'basic' / LABEL_FILE} is also "
        "accepted); check --data-root / SSPA_DATA_ROOT and the dataset layout"
    )


def read(dataset_dir: Path, split: str) -> Listing:
    level = _level(dataset_dir)
    label_file = level / LABEL_FILE
    require_dir(level / IMAGE_DIR, "RAF-DB aligned images")
    prefix = level.relative_to(dataset_dir) / IMAGE_DIR
    paths, labels, seen = [], [], {}
    with open(label_file, encoding="utf-8-sig", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{label_file}:{number}"
            match = _IMAGE_NAME.match(fields[0]) if len(fields) == 2 else None
            if match is None or not fields[1].isdigit() or int(fields[1]) not in RAFDB_CODES:
                raise DataError(
                    f"{where}: malformed line {line.strip()!r}; expected '<train|test>_<number>.jpg <code 1-7>'"
                )
            if fields[0] in seen:
                raise DataError(f"{where}: {fields[0]} is listed again (first at line {seen[fields[0]]}); remove one line")
            seen[fields[0]] = number
            if match.group(1) != split:
                continue
            paths.append(str(prefix / f"{Path(fields[0]).stem}_aligned.jpg"))
            labels.append(CLASS_INDEX[RAFDB_CODES[int(fields[1])]])
    listing = Listing(
        dataset="rafdb",
        split=split,
        base=dataset_dir,
        paths=paths,
        labels=np.asarray(labels, dtype=np.int64),
        boxes=no_boxes(len(paths)),
        crop=CROP_ALIGNED,
    )
    return require_nonempty(listing, label_file)
