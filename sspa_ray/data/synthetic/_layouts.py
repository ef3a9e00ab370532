"""The synthetic faces written in the official layouts, so the real loaders read them: RAF-DB's
image names and label list, AffectNet's numbered folders and CSVs (codes 7..10 included)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from sspa_ray.data import rafdb
from sspa_ray.data.synthetic._faces import Faces
from sspa_ray.labels import AFFECTNET_CODES, CLASSES, RAFDB_CODES

_RAFDB_CODE = {name: code for code, name in RAFDB_CODES.items()}
_AFFECTNET_CODE = {name: code for code, name in AFFECTNET_CODES.items()}
_AFFECTNET_HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
RAFDB_IMAGES = Path("rafdb") / rafdb.IMAGE_DIR
AFFECTNET_IMAGES = Path("affectnet") / "Manually_Annotated_Images"


def rafdb_names(split: str, n: int) -> list[str]:
    digits = {"train": 5, "test": 4}[split]  # the official names: train_00001, test_0001
    return [f"{split}_{i:0{digits}d}" for i in range(1, n + 1)]


def affectnet_paths(seed: int, split: str, n: int) -> list[str]:
    """Real AffectNet files sit in numbered folders under hash-like names."""
    paths = []
    for i in range(n):
        sub = f"{i // 500 + 1 + (0 if split == 'train' else 900)}"
        stem = hashlib.sha1(f"{seed}/{split}/{i}".encode()).hexdigest()[:32]
        paths.append(f"{sub}/{stem}.jpg")
    return paths


def write_rafdb_labels(out: Path, faces: dict[str, Faces]) -> None:
    lines = []
    for split in ("train", "test"):
        for name, label in zip(rafdb_names(split, len(faces[split].labels)), faces[split].labels, strict=True):
            lines.append(f"{name}.jpg {_RAFDB_CODE[CLASSES[label]]}\n")
    label_dir = out / "rafdb" / "EmoLabel"
    label_dir.mkdir(parents=True)
    (label_dir / "list_patition_label.txt").write_text("".join(lines))


def write_affectnet_lists(out: Path, seed: int, faces: dict[str, Faces], boxes: dict[str, np.ndarray]) -> list[tuple[str, str, str]]:
    """Write the AffectNet CSVs; return ground-truth rows (path, label, true_label) of kept train rows."""
    lists = out / "affectnet" / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    truth = []
    for split, csv_name in (("train", "training.csv"), ("val", "validation.csv")):
        drawn = faces[split]
        valence, arousal = drawn.annotated_va.T
        rows = [_AFFECTNET_HEADER + "\n"]
        for i, rel in enumerate(affectnet_paths(seed, split, len(drawn.params))):
            x, y, w, h = boxes[split][i].tolist()
            va = f"{valence[i]:.6f},{arousal[i]:.6f}"
            if drawn.dropped_codes[i] >= 0:
                code = int(drawn.dropped_codes[i])
                if code >= 9:  # AffectNet gives uncertain and non-face rows valence = arousal = -2
                    va = "-2,-2"
            else:
                code = _AFFECTNET_CODE[CLASSES[drawn.labels[i]]]
                if split == "train":
                    truth.append((f"Manually_Annotated_Images/{rel}", CLASSES[drawn.labels[i]], CLASSES[drawn.true_labels[i]]))
            rows.append(f'{rel},{x},{y},{w},{h},"",{code},{va}\n')
        (lists / csv_name).write_text("".join(rows))
    return truth
