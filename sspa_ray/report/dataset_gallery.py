"""The paper's Figure 5: a gallery of faces per class of one dataset split (`sspa-ray data check
--gallery`). The aux faces SSM kept and rejected (Figure 6) are drawn by report/selection.py, from a
run's selection.csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from sspa_ray.data import read_listing
from sspa_ray.data._decode import decode_face
from sspa_ray.labels import CLASSES


def draw_gallery(dataset: str, root: Path, out: Path, *, split: str = "train", per_class: int = 8, size: int = 96,
                 seed: int = 0) -> Path:
    """Draw `per_class` random faces of each class of one split, cropped as the cache crops them, to `out`."""
    listing = read_listing(dataset, split, root)
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(per_class * 1.1, len(CLASSES) * 1.15))
    axes = fig.subplots(len(CLASSES), per_class, squeeze=False)
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
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
