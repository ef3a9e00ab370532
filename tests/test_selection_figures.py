"""SSM's selection seen: the per-epoch / per-class plot and the Figure 6 gallery."""

import csv

import numpy as np
import pandas as pd
from PIL import Image

from sspa_ray.data import read_listing, synthetic
from sspa_ray.data.gallery import draw_selection_gallery
from sspa_ray.labels import CLASSES
from sspa_ray.report.selection import plot_selection
from sspa_ray.specs.ablation import load_ablation


def trials(with_truth: bool) -> pd.DataFrame:
    records = []
    for row in (0, 1, 2):
        for seed in (0, 1):
            record = {"row": row, "status": "completed", "train.seed": seed, "modules.ssm": row > 0,
                      "train.selection_epochs": 2, "clean_share": 0.6,
                      "history.clean_share": [1.0, 0.7, 0.6], "history.selection_precision": [np.nan] * 3,
                      "history.selection_recall": [np.nan] * 3, "aux_base_rate": np.nan,
                      **{f"kept.{c}": 0.1 * i for i, c in enumerate(CLASSES)}}
            if with_truth:
                record.update({"history.selection_precision": [0.7, 0.8, 0.85],
                               "history.selection_recall": [1.0, 0.8, 0.7], "aux_base_rate": 0.7})
            records.append(record)
    return pd.DataFrame(records)


def test_selection_plot_with_and_without_ground_truth(tmp_path):
    spec = load_ablation("modules")
    for truth in (True, False):
        out = tmp_path / str(truth)
        out.mkdir()
        written = plot_selection(spec, trials(truth), out)
        image = Image.open(written["selection"])
        assert image.size[0] > 400  # two SSM rows: two panels
    # No SSM row with results: no plot.
    assert plot_selection(spec, trials(True).query("row == 0"), tmp_path) == {}


def test_gallery_shows_kept_and_rejected_aux_faces_with_true_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("SSPA_CACHE_DIR", str(tmp_path / "cache"))
    root = synthetic.ensure(0, 0.02, progress=False)
    listing = read_listing("affectnet", "train", root)
    selection = tmp_path / "selection.csv"
    with open(selection, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "source", "label", "clean"])
        for i, path in enumerate(listing.paths):
            writer.writerow([path, "aux", CLASSES[listing.labels[i]], i % 2])
    out = draw_selection_gallery(selection, root, tmp_path / "gallery.png", per_group=4,
                                 truth=synthetic.read_ground_truth(root))
    assert Image.open(out).size[1] > 100
