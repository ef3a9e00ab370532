"""Loaders of the official layouts: exact class counts per split, crops, the aux share, `data check`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from _layouts import AFFECTNET_TRAIN, AFFECTNET_VA, interleave, make_affectnet, make_caers, make_rafdb, red_share
from PIL import Image

from sspa_ray.data import check_dataset, load_joint_data, load_split, stratified_subset
from sspa_ray.defaults import make_config
from sspa_ray.errors import DataError
from sspa_ray.labels import CLASSES

# Written out by hand from the official code lists, so a permuted map in labels.py fails here.
RAFDB_EXPECTED = {
    "train": {"surprise": 2, "fear": 3, "disgust": 4, "happiness": 5, "sadness": 6, "anger": 7, "neutral": 8},
    "test": {"surprise": 7, "fear": 6, "disgust": 5, "happiness": 4, "sadness": 3, "anger": 2, "neutral": 1},
}
AFFECTNET_EXPECTED = {
    "train": {"neutral": 9, "happiness": 8, "sadness": 7, "surprise": 6, "fear": 5, "disgust": 4, "anger": 3},
    "val": {"neutral": 1, "happiness": 2, "sadness": 3, "surprise": 4, "fear": 5, "disgust": 6, "anger": 7},
}
CAERS_EXPECTED = {
    "train": {"anger": 1, "disgust": 2, "fear": 3, "happiness": 4, "neutral": 5, "sadness": 6, "surprise": 7},
    "test": {"anger": 3, "disgust": 1, "fear": 4, "happiness": 1, "neutral": 5, "sadness": 9, "surprise": 2},
}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SSPA_CACHE_DIR", str(tmp_path / "cache"))


def _counts(labels: np.ndarray) -> dict[str, int]:
    return {name: int((labels == i).sum()) for i, name in enumerate(CLASSES)}


@pytest.mark.parametrize("basic", [False, True], ids=["plain", "zip-basic-level"])
def test_rafdb_counts_per_split_and_class(tmp_path, basic):
    make_rafdb(tmp_path, basic=basic)
    report = check_dataset("rafdb", tmp_path, progress=False)
    for split in ("train", "test"):
        assert report[split] == {name: RAFDB_EXPECTED[split][name] for name in CLASSES}
    train = load_split("rafdb", "train", tmp_path, 16, progress=False)
    assert train.images.shape == (35, 16, 16, 3) and train.images.dtype == np.uint8
    assert _counts(train.labels) == RAFDB_EXPECTED["train"]
    prefix = "basic/" if basic else ""
    assert train.paths[0] == f"{prefix}Image/aligned/train_00001_aligned.jpg"
    assert load_split("rafdb", "test", tmp_path, 16, progress=False).paths[0] == f"{prefix}Image/aligned/test_0001_aligned.jpg"


def test_affectnet_counts_dropped_codes_and_box_crop(tmp_path):
    make_affectnet(tmp_path)
    report = check_dataset("affectnet", tmp_path, progress=False)
    assert report["train"] == AFFECTNET_EXPECTED["train"]
    assert report["val"] == AFFECTNET_EXPECTED["val"]
    assert report["dropped"]["train"] == {"contempt": 2, "none": 1, "uncertain": 1, "non-face": 3,
                                          "valence/arousal outside [-1, 1]": 3}
    assert report["dropped"]["val"] == {}
    train = load_split("affectnet", "train", tmp_path, 8, progress=False)
    assert _counts(train.labels) == AFFECTNET_EXPECTED["train"]
    # Valence and arousal of the kept rows, in order; [-1, 1] is kept, ends included.
    kept = [AFFECTNET_VA[i % 4] for i, code in enumerate(interleave(AFFECTNET_TRAIN)) if code <= 6]
    assert train.valence_arousal.dtype == np.float32 and train.valence_arousal.tolist() == [list(va) for va in kept]
    assert train.paths[0].startswith("Manually_Annotated_Images/10")
    # Every face box is red in the source image (some reach past its edge and must be clipped):
    # the crop must contain red only.
    assert red_share(train.images) > 0.95


def test_affectnet_validation_without_header(tmp_path):
    make_affectnet(tmp_path, val_header=False)
    assert check_dataset("affectnet", tmp_path, progress=False)["val"] == AFFECTNET_EXPECTED["val"]
    assert load_split("affectnet", "val", tmp_path, 8, progress=False).valence_arousal[:2].tolist() == [
        [-1.0, 0.5], [0.25, -0.75]]


def test_data_check_affectnet_reports_valence_and_arousal_ranges(tmp_path):
    make_affectnet(tmp_path)
    command = [sys.executable, "-m", "sspa_ray.cli.main", "data", "check", "affectnet", "--data-root", str(tmp_path)]
    report = json.loads(subprocess.run([*command, "--json"], capture_output=True, text=True, check=True).stdout)
    train = report["valence_arousal"]["train"]
    assert (train["valence"]["min"], train["valence"]["max"]) == (-1.0, 1.0)
    assert (train["arousal"]["min"], train["arousal"]["max"]) == (-0.75, 1.0)
    assert -1.0 < train["valence"]["mean"] < 1.0 and set(report["valence_arousal"]) == {"train", "val"}
    assert report["train"] == AFFECTNET_EXPECTED["train"]  # the split objects still map class -> count
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "dropped from train:" in text and "3 valence/arousal outside [-1, 1]" in text
    assert "train: valence -1.000 to +1.000" in text and "arousal -0.750 to +1.000" in text


def test_affectnet_malformed_valence_is_an_error_naming_the_line(tmp_path):
    make_affectnet(tmp_path)
    csv_path = tmp_path / "affectnet" / "Manually_Annotated_file_lists" / "training.csv"
    lines = csv_path.read_text().splitlines()
    fields = lines[3].split(",")
    lines[3] = ",".join(fields[:-2] + ["high", fields[-1]])
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"training\.csv:4: malformed row .*valence and for arousal"):
        check_dataset("affectnet", tmp_path, progress=False)


@pytest.mark.parametrize("boxes", [False, True], ids=["whole-frame", "face-box-file"])
def test_caers_counts_and_optional_face_boxes(tmp_path, boxes):
    make_caers(tmp_path, boxes=boxes)
    report = check_dataset("caers", tmp_path, progress=False)
    assert report["train"] == CAERS_EXPECTED["train"] and report["test"] == CAERS_EXPECTED["test"]
    train = load_split("caers", "train", tmp_path, 8, progress=False)
    assert _counts(train.labels) == CAERS_EXPECTED["train"]
    assert red_share(train.images) > 0.95 if boxes else red_share(train.images) == 0


def test_caers_reports_stray_files(tmp_path):
    make_caers(tmp_path)
    (tmp_path / "caers" / "train" / "Happy" / "notes.txt").write_text("x")
    report = check_dataset("caers", tmp_path, progress=False)
    assert report["train"]["happiness"] == 4
    assert any("notes.txt" in problem for problem in report["problems"])


def test_data_check_json_and_gallery_through_the_cli(tmp_path):
    make_rafdb(tmp_path)
    gallery = tmp_path / "gallery.png"
    out = subprocess.run(
        [sys.executable, "-m", "sspa_ray.cli.main", "data", "check", "rafdb", "--data-root", str(tmp_path),
         "--json", "--gallery", str(gallery)],
        capture_output=True, text=True, check=True,
    )
    report = json.loads(out.stdout)
    assert report["train"] == RAFDB_EXPECTED["train"] and report["test"] == RAFDB_EXPECTED["test"]
    with Image.open(gallery) as png:
        assert png.format == "PNG" and png.size[0] > 300


def test_stratified_subset_is_seeded_and_keeps_every_class():
    labels = np.repeat(np.arange(7), [100, 50, 10, 1, 30, 20, 5])
    a = stratified_subset(labels, 0.1, seed=0)
    assert np.bincount(labels[a], minlength=7).tolist() == [10, 5, 1, 1, 3, 2, 1]
    assert np.array_equal(a, stratified_subset(labels, 0.1, seed=0))
    assert not np.array_equal(a, stratified_subset(labels, 0.1, seed=1))
    assert len(stratified_subset(labels, 1.0, seed=3)) == len(labels)


def test_load_joint_data_on_real_layouts(tmp_path):
    make_rafdb(tmp_path)
    make_affectnet(tmp_path)
    cfg = make_config("rafdb", {"data.root": str(tmp_path), "data.image_size": 16, "data.aux_ratio": 0.5, "train.seed": 4})
    joint = load_joint_data(cfg, progress=False)
    assert _counts(joint.target_train.labels) == RAFDB_EXPECTED["train"]
    assert _counts(joint.test.labels) == RAFDB_EXPECTED["test"]
    # Half of each aux class, rounded half up: 9 -> 5, 8 -> 4, 7 -> 4, 6 -> 3, 5 -> 3, 4 -> 2, 3 -> 2.
    assert _counts(joint.aux_train.labels) == {
        "neutral": 5, "happiness": 4, "sadness": 4, "surprise": 3, "fear": 3, "disgust": 2, "anger": 2,
    }
    assert joint.aux_train.images.shape == (23, 16, 16, 3) and joint.aux_true_labels is None
    assert len(set(joint.aux_train.paths)) == 23
    # The aux share keeps each sample's valence and arousal; real targets have none.
    full = load_split("affectnet", "train", tmp_path, 16, progress=False)
    va = dict(zip(full.paths, full.valence_arousal.tolist(), strict=True))
    assert joint.aux_train.valence_arousal.tolist() == [va[p] for p in joint.aux_train.paths]
    assert joint.target_train.valence_arousal is None and joint.target_true_valence_arousal is None
    cfg.set("data.aux", "none")
    assert load_joint_data(cfg, progress=False).aux_train is None


def test_missing_data_root_names_the_fix(monkeypatch):
    monkeypatch.delenv("SSPA_DATA_ROOT", raising=False)
    with pytest.raises(DataError, match="--data-root"):
        load_joint_data(make_config("rafdb"), progress=False)
