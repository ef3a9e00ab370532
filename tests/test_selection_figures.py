"""SSM's selection seen: the per-epoch / per-class plot and the Figure 6 gallery."""

import csv

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sspa_ray.data import read_listing, synthetic
from sspa_ray.labels import CLASSES
from sspa_ray.outputs import SELECTION_COLUMNS, Source
from sspa_ray.report.plots import save_figure
from sspa_ray.report.selection import plot_selection, selection_figure, selection_gallery
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


FOOTER = "target synthetic (1000 train, 600 test images); no --set; seeds 0, 1"


def test_selection_plot_with_and_without_ground_truth(tmp_path):
    spec = load_ablation("modules")
    for truth in (True, False):
        out = tmp_path / str(truth)
        out.mkdir()
        written = plot_selection(spec, trials(truth), out, footer=FOOTER)
        image = Image.open(written["selection"])
        assert image.size[0] > 400  # two SSM rows: two panels
        # The y axis says what it shows, D_T is set as math, and the footer names the data and seeds.
        fig = selection_figure(spec, trials(truth).query("row > 0"))
        save_figure(fig, out / "again.png", FOOTER, formats=("png",))
        left = fig.axes[0]
        assert left.get_ylabel() == ("share (0-1)" if truth else "share of the class kept")
        titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
        assert titles == ["SSM (n=2)", "SSM + $D_T$ fixed (n=2)"] and not any("D_T " in t for t in titles)
        assert any("Data: target synthetic" in text.get_text() and "seeds 0, 1" in text.get_text() for text in fig.texts)
    # No SSM row with results: no plot.
    assert plot_selection(spec, trials(True).query("row == 0"), tmp_path, footer=FOOTER) == {}


def test_gallery_shows_kept_and_rejected_aux_faces_with_true_labels_and_names_its_trial(tmp_path, monkeypatch):
    monkeypatch.setenv("SSPA_CACHE_DIR", str(tmp_path / "cache"))
    root = synthetic.ensure(0, 0.02, progress=False)
    listing = read_listing("affectnet", "train", root)
    selection = tmp_path / "selection.csv"
    truth = synthetic.read_ground_truth(root)
    with open(selection, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SELECTION_COLUMNS)
        writer.writerow(["rafdb/target.jpg", Source.TARGET, CLASSES[0], 1])  # target rows are not drawn
        for i, path in enumerate(listing.paths):
            writer.writerow([path, Source.AUX, CLASSES[listing.labels[i]], i % 2])
    fig = selection_gallery(selection, root, per_group=4, truth=truth,
                            trial="modules-ssm+fix-s0 (SSM + $D_T$ fixed, seed 0)")
    save_figure(fig, tmp_path / "gallery.png", FOOTER, formats=("png",))
    assert "trial modules-ssm+fix-s0" in fig._suptitle.get_text()
    # Top row: the kept aux faces, bottom row: the rejected ones, each labelled with its count.
    kept = sum(i % 2 for i in range(len(listing.paths)))
    rows = [fig.axes[k * 4:(k + 1) * 4] for k in (0, 1)]
    assert rows[0][0].get_ylabel() == f"kept as clean\n({kept})"
    assert rows[1][0].get_ylabel() == f"rejected as noisy\n({len(listing.paths) - kept})"
    # Each face names its given label and its true one, in red exactly where they disagree.
    given_of = {CLASSES[label]: label for label in range(len(CLASSES))}
    shown = [ax.title for row in rows for ax in row]
    assert len(shown) == 8 and all(t.get_text().startswith("given: ") and "\ntrue: " in t.get_text() for t in shown)
    for title in shown:
        given, true = (line.split(": ")[1] for line in title.get_text().split("\n"))
        assert given in given_of and true in given_of
        assert (title.get_color() == "red") == (given != true)


def test_relabelling_plot_carries_the_provenance_footer(tmp_path, monkeypatch):
    from sspa_ray.report import relabel
    from sspa_ray.report.relabel import plot_relabelling

    drawn = []

    def keep_figure(fig, *args, **kwargs):  # the real save_figure; the test reads the figure it saved
        drawn.append(fig)
        return save_figure(fig, *args, **kwargs)

    monkeypatch.setattr(relabel, "save_figure", keep_figure)

    records = [{"row": 3, "status": "completed", "train.seed": seed, "method.name": "scn", "aux_base_rate": 0.7,
                "history.relabelled_share": [0.0, 0.1, 0.2], "history.relabel_precision": [None if seed else 0.5, 0.6, 0.7],
                "history.low_importance_noise": [0.4, 0.45, 0.5]} for seed in (0, 1)]
    written = plot_relabelling(load_ablation("strategies"), pd.DataFrame(records), tmp_path, footer=FOOTER)
    assert Image.open(written["relabel"]).size[1] > 200
    (fig,) = drawn
    assert any(text.get_text().startswith("Data: " + FOOTER[:40]) for text in fig.texts)
    (panel,) = [ax for ax in fig.axes if ax.get_visible()]
    assert panel.get_title().endswith("(n=2)")
    lines = {line.get_label(): line for line in panel.get_lines()}
    assert set(lines) == {*relabel.RELABEL_CURVES.values(), "aux noise rate"}
    assert list(lines["aux noise rate"].get_ydata()) == [pytest.approx(0.3)] * 2
    assert list(lines["aux share relabelled"].get_ydata()) == pytest.approx([0.0, 0.1, 0.2])
