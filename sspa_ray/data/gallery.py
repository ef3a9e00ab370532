"""Galleries of faces: samples per class (like the paper's Figure 5, `sspa-ray data check --gallery`), and
the aux samples SSM kept and rejected (the paper's Figure 6, beside an ablation's tables)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sspa_ray.data import read_listing
from sspa_ray.data._decode import decode_face
from sspa_ray.labels import CLASSES


def draw_gallery(dataset: str, root: Path, out: Path, *, split: str = "train", per_class: int = 8, size: int = 96, seed: int = 0) -> Path:
    """Draw `per_class` random faces of each class of one split, cropped as the cache crops them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    listing = read_listing(dataset, split, root)
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(CLASSES), per_class, figsize=(per_class * 1.1, len(CLASSES) * 1.15), squeeze=False)
    for row, name in enumerate(CLASSES):
        members = np.flatnonzero(listing.labels == row)
        picked = np.sort(rng.permutation(members)[:per_class])
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(picked):
                i = picked[col]
                ax.imshow(decode_face(listing.base / listing.paths[i], listing.box(i), size))
        axes[row][0].set_ylabel(f"{name}\n({len(members)})", rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"{dataset} {split}: {per_class} random faces per class", fontsize=10)
    return _save(fig, out)


def draw_selection_gallery(selection_csv: Path, root: Path, out: Path, *, dataset: str = "affectnet",
                           per_group: int = 10, size: int = 64, seed: int = 0,
                           truth: dict[str, int] | None = None) -> Path:
    """The paper's Figure 6: aux faces SSM kept as clean (top) and rejected as noisy (bottom).

    Each face is titled with its given label and, when `truth` (path -> class index, the synthetic
    benchmark's ground truth) is given, its label under the target's standard, in red where the
    two disagree. `selection_csv` is a run's selection.csv (path, source, label, clean).
    """
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(selection_csv, newline="") as handle:
        aux = [row for row in csv.DictReader(handle) if row["source"] == "aux"]
    listing = read_listing(dataset, "train", root)
    where = {path: i for i, path in enumerate(listing.paths)}
    rng = np.random.default_rng(seed)
    groups = [("kept as clean", [r for r in aux if r["clean"] == "1"]),
              ("rejected as noisy", [r for r in aux if r["clean"] != "1"])]
    fig, axes = plt.subplots(2, per_group, figsize=(per_group * 1.25, 2 * 1.75), squeeze=False)
    for (title, rows), line in zip(groups, axes):
        picked = [rows[i] for i in np.sort(rng.permutation(len(rows))[:per_group])]
        for ax in line:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        for ax, row in zip(line, picked):
            i = where[row["path"]]
            ax.imshow(decode_face(listing.base / listing.paths[i], listing.box(i), size))
            text, colour = f"given: {row['label']}", "black"
            if truth is not None and row["path"] in truth:
                true = CLASSES[truth[row["path"]]]
                text += f"\ntrue: {true}"
                colour = "black" if true == row["label"] else "red"
            ax.set_title(text, fontsize=7, color=colour)
        line[0].set_ylabel(f"{title}\n({len(rows)})", fontsize=9)
    fig.suptitle("Aux samples after the selection stage" + (" (red: the given label disagrees with the target's standard)"
                                                            if truth is not None else ""), fontsize=9)
    return _save(fig, out)


def _save(fig, out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
