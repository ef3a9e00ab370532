"""Tiny datasets in the official RAF-DB, AffectNet and CAER-S layouts, with real image files.

Each class gets a different number of images, so a permuted label map changes the counts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Expected canonical counts are written out by hand in the tests (not derived from labels.py).
RAFDB_TRAIN = {1: 2, 2: 3, 3: 4, 4: 5, 5: 6, 6: 7, 7: 8}   # code -> images
RAFDB_TEST = {1: 7, 2: 6, 3: 5, 4: 4, 5: 3, 6: 2, 7: 1}
AFFECTNET_TRAIN = {0: 9, 1: 8, 2: 7, 3: 6, 4: 5, 5: 4, 6: 3, 7: 2, 8: 1, 9: 1, 10: 3}
AFFECTNET_VAL = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 5: 6, 6: 7}
# Valence and arousal of AffectNet row i (every split): a cycle that reaches both ends of [-1, 1]
# in valence. Rows with values outside [-1, 1] (AffectNet's -2 = none) are appended to the train
# split with code 1 (happiness), to be dropped and counted.
AFFECTNET_VA = [(-1.0, 0.5), (0.25, -0.75), (1.0, 0.0), (-0.5, 1.0)]
AFFECTNET_VA_OUT_OF_RANGE = [(-2, -2), (1.5, 0.2), (0.3, -1.01)]
CAERS_TRAIN = {"Angry": 1, "Disgust": 2, "Fear": 3, "Happy": 4, "Neutral": 5, "Sad": 6, "Surprise": 7}
CAERS_TEST = {"Angry": 3, "Disgust": 1, "Fear": 4, "Happy": 1, "Neutral": 5, "Sad": 9, "Surprise": 2}

RED, BLUE = (220, 20, 20), (20, 20, 220)


def red_share(images: np.ndarray) -> float:
    """Share of pixels that are clearly red rather than blue (the face box is red)."""
    return float((images[..., 0].astype(int) > images[..., 2].astype(int) + 60).mean())


def _image(rng: np.random.Generator, size=(40, 30), box=None) -> Image.Image:
    """Blue noise everywhere, red inside `box` (x, y, w, h): lets a test see where the crop went."""
    w, h = size
    pixels = np.empty((h, w, 3), dtype=np.uint8)
    pixels[:] = BLUE
    if box is not None:
        x, y, bw, bh = box
        pixels[max(y, 0): y + bh, max(x, 0): x + bw] = RED
    noise = rng.integers(0, 8, size=pixels.shape, dtype=np.uint8)
    return Image.fromarray(pixels + noise)


def interleave(counts: dict) -> list:
    """Codes in a mixed order (not grouped by class), as in the real label files."""
    remaining = dict(counts)
    order = []
    while any(remaining.values()):
        for code in counts:
            if remaining[code]:
                order.append(code)
                remaining[code] -= 1
    return order


def make_rafdb(root: Path, *, basic: bool = False, train=RAFDB_TRAIN, test=RAFDB_TEST) -> Path:
    rng = np.random.default_rng(0)
    level = root / "rafdb" / ("basic" if basic else "")
    (level / "EmoLabel").mkdir(parents=True)
    (level / "Image" / "aligned").mkdir(parents=True)
    lines = []
    for split, counts, digits in (("train", train, 5), ("test", test, 4)):
        for i, code in enumerate(interleave(counts), start=1):
            name = f"{split}_{i:0{digits}d}"
            _image(rng, (24, 24)).save(level / "Image" / "aligned" / f"{name}_aligned.jpg", quality=90)
            lines.append(f"{name}.jpg {code}")
    (level / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root / "rafdb"


AFFECTNET_HEADER = (
    "subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks, expression, valence, arousal"
)


def make_affectnet(root: Path, *, train=AFFECTNET_TRAIN, val=AFFECTNET_VAL, val_header: bool = True) -> Path:
    """Images are 40x30; the face box is red. Some boxes reach past the image edge (clipped).
    Valence and arousal follow AFFECTNET_VA; the train split ends with AFFECTNET_VA_OUT_OF_RANGE rows."""
    rng = np.random.default_rng(1)
    base = root / "affectnet"
    (base / "Manually_Annotated_file_lists").mkdir(parents=True)
    for split, counts, csv_name in (("train", train, "training.csv"), ("val", val, "validation.csv")):
        rows = [AFFECTNET_HEADER] if (split == "train" or val_header) else []
        codes = interleave(counts)
        va = [AFFECTNET_VA[i % len(AFFECTNET_VA)] for i in range(len(codes))]
        if split == "train":
            codes += [1] * len(AFFECTNET_VA_OUT_OF_RANGE)
            va += AFFECTNET_VA_OUT_OF_RANGE
        for i, (code, (valence, arousal)) in enumerate(zip(codes, va, strict=True)):
            sub = str(100 + i % 3)
            (base / "Manually_Annotated_Images" / sub).mkdir(parents=True, exist_ok=True)
            box = (10, 5, 16, 16) if i % 2 else (30, 20, 16, 16)  # the second kind sticks out: clipped
            _image(rng, (40, 30), box).save(
                base / "Manually_Annotated_Images" / sub / f"{split}{i:04d}.jpg", quality=95, subsampling=0
            )
            landmarks = '"1.0;2.0;3.0;4.0"'
            rows.append(f"{sub}/{split}{i:04d}.jpg,{box[0]},{box[1]},{box[2]},{box[3]},{landmarks},{code},{valence},{arousal}")
        (base / "Manually_Annotated_file_lists" / csv_name).write_text("\n".join(rows) + "\n")
    return base


def make_caers(root: Path, *, train=CAERS_TRAIN, test=CAERS_TEST, boxes: bool = False) -> Path:
    """Frames are 40x30 PNG and JPEG files; with boxes=True a face_boxes.csv covers the train split."""
    rng = np.random.default_rng(2)
    base = root / "caers"
    box_rows = ["path,face_x,face_y,face_width,face_height"]
    for split, counts in (("train", train), ("test", test)):
        for folder, n in counts.items():
            (base / split / folder).mkdir(parents=True)
            for i in range(n):
                name = f"{i:04d}.png" if i % 2 else f"{i:04d}.jpg"
                box = (4, 6, 12, 12)
                _image(rng, (40, 30), box if boxes else None).save(base / split / folder / name)
                if boxes and split == "train":
                    box_rows.append(f"{split}/{folder}/{name},{box[0]},{box[1]},{box[2]},{box[3]}")
    if boxes:
        (base / "face_boxes.csv").write_text("\n".join(box_rows) + "\n")
    return base
