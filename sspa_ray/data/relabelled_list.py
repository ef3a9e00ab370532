"""DCJT's relabelled auxiliary list: ``path label valence arousal``, one line per aux image.

DCJT (Yu et al., IEEE TAC 2024) trains on AffectNet images relabelled to the target's criteria,
distributed as a text file apart from its code. Its lines read ``/any/prefix/<image path> 3
0.19 -0.05``: the label is 0-based in RAF-DB's order (RAF-DB code - 1: surprise, fear, disgust,
happiness, sadness, anger, neutral), as in DCJT's own RAF-DB list, and valence and arousal lie in
[-1, 1]. A line names an aux image when its path ends with that image's dataset-relative path
(``Manually_Annotated_Images/...``), so absolute paths from another machine work as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sspa_ray.errors import DataError
from sspa_ray.labels import CLASS_INDEX, RAFDB_CODES


@dataclass
class RelabelledAux:
    labels: np.ndarray           # int64 [N_aux]: the list's label (canonical index), -1 where the list has no line
    valence_arousal: np.ndarray  # float32 [N_aux, 2]: the list's values, NaN where it has no line
    unmatched_lines: int         # lines naming no aux image of this run (another aux share, or dropped rows)

    @property
    def listed(self) -> np.ndarray:
        return self.labels >= 0


def read_relabelled_list(path: str | Path, aux_paths: list[str]) -> RelabelledAux:
    """Read and check every line of `path`; a bad line is a DataError naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; dcjt.aux_labels names DCJT's relabelled aux list (path label valence arousal)")
    index = {p: i for i, p in enumerate(aux_paths)}
    labels = np.full(len(aux_paths), -1, dtype=np.int64)
    va = np.full((len(aux_paths), 2), np.nan, dtype=np.float32)
    seen: dict[int, int] = {}
    unmatched = 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.split()
        if len(fields) != 4:
            raise DataError(f"{where}: expected 'path label valence arousal', got {len(fields)} fields: {line.strip()!r}")
        image, label, valence, arousal = fields
        try:
            code = int(label)
        except ValueError:
            raise DataError(f"{where}: label {label!r} is not an integer 0..6 (RAF-DB's order, code - 1)") from None
        if code + 1 not in RAFDB_CODES:
            raise DataError(f"{where}: label {code} is outside 0..6 (RAF-DB's order, code - 1)")
        values = []
        for name, text in (("valence", valence), ("arousal", arousal)):
            try:
                value = float(text)
            except ValueError:
                raise DataError(f"{where}: {name} {text!r} is not a number in [-1, 1]") from None
            if not math.isfinite(value) or abs(value) > 1:
                raise DataError(f"{where}: {name} {value} is outside [-1, 1]")
            values.append(value)
        i = _match(image, index)
        if i is None:
            unmatched += 1
            continue
        if i in seen:
            raise DataError(f"{where}: {aux_paths[i]} is listed twice (first at line {seen[i]}); keep one line per image")
        seen[i] = number
        labels[i] = CLASS_INDEX[RAFDB_CODES[code + 1]]
        va[i] = values
    if not seen:
        raise DataError(f"{path}: no line names an aux image of this run (e.g. {aux_paths[0] if aux_paths else '-'}); "
                        "check that each line's path ends with the image's path under the dataset folder")
    return RelabelledAux(labels, va, unmatched)


def _match(image: str, index: dict[str, int]) -> int | None:
    """The aux sample whose dataset-relative path `image` ends with, trying the longest suffix first."""
    parts = image.replace("\\", "/").split("/")
    for start in range(len(parts)):
        found = index.get("/".join(parts[start:]))
        if found is not None:
            return found
    return None
