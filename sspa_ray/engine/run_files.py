"""What a run writes into its folder besides checkpoints: metrics.json and selection.csv.

Both are written atomically (a reader never sees half a file) and only by rank 0.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from sspa_ray.engine.checkpoint import atomic_write_text
from sspa_ray.labels import CLASSES
from sspa_ray.outputs import METRICS_FILE, SELECTION_COLUMNS, SELECTION_FILE, Source


def write_metrics(run_dir: Path, summary: dict) -> None:
    atomic_write_text(run_dir / METRICS_FILE, json.dumps(summary, indent=1) + "\n")


def write_selection(run_dir: Path, data, labels: np.ndarray, clean: np.ndarray) -> None:
    """One row per training sample (target first, then aux): its path, source, label and SSM's verdict."""
    splits = [(Source.TARGET.value, data.target_train)]
    if data.aux_train is not None:
        splits.append((Source.AUX.value, data.aux_train))
    paths = [path for _, split in splits for path in split.paths]
    sources = np.repeat([source for source, _ in splits], [len(split.labels) for _, split in splits])
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(SELECTION_COLUMNS)
    writer.writerows(zip(paths, sources, np.array(CLASSES)[labels], clean.astype(int), strict=True))
    atomic_write_text(run_dir / SELECTION_FILE, rows.getvalue())
