"""The synthetic benchmark: official layouts, long tail, annotation inconsistency, determinism."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys

import numpy as np
import pytest

from sspa_ray.data import check_dataset, load_joint_data, load_split, read_listing, synthetic
from sspa_ray.defaults import make_config
from sspa_ray.labels import CLASS_INDEX

# make test spreads tests over two workers (pytest-xdist, --dist loadgroup); this module's tests share
# module-scoped runs, so they stay together on one worker.
pytestmark = pytest.mark.xdist_group("test_data_synthetic")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "bench"
    subprocess.run(
        [sys.executable, "-m", "sspa_ray.cli.main", "data", "synth", "--out", str(out), "--seed", "3", "--scale", "0.1"],
        check=True, capture_output=True,
    )
    return out


def _ground_truth(root):
    with open(root / "ground_truth.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_written_in_the_official_layouts(bench):
    assert (bench / "rafdb" / "EmoLabel" / "list_patition_label.txt").is_file()
    assert (bench / "affectnet" / "Manually_Annotated_file_lists" / "training.csv").is_file()
    rafdb = check_dataset("rafdb", bench, progress=False)
    affectnet = check_dataset("affectnet", bench, progress=False)
    assert sum(rafdb["train"].values()) == 100 and sum(rafdb["test"].values()) == 60
    assert sum(affectnet["train"].values()) == 2300
    assert sum(affectnet["dropped"]["train"].values()) == 69  # codes 7..10 are written, and dropped


def test_aux_train_is_23_times_the_target_train_as_in_the_paper(bench):
    # AffectNet's 283,721 training images (7 classes) are 23x RAF-DB's 12,271: 10% aux is 2.3x the target.
    target = len(read_listing("rafdb", "train", bench))
    aux = len(read_listing("affectnet", "train", bench))
    assert 23 * 0.95 <= aux / target <= 23 * 1.05
    sizes = synthetic.split_sizes(1.0)  # the default scale of `sspa-ray data synth`
    assert 23 * 0.95 <= sizes["affectnet/train"] / sizes["rafdb/train"] <= 23 * 1.05


def test_target_train_is_long_tailed(bench):
    counts = np.bincount(read_listing("rafdb", "train", bench).labels, minlength=7)
    assert counts.min() > 0
    assert counts.max() / counts.min() >= 4
    assert counts.argmax() in (CLASS_INDEX["happiness"], CLASS_INDEX["neutral"])


def test_aux_labels_disagree_with_the_target_standard(bench):
    rows = _ground_truth(bench)
    listing = read_listing("affectnet", "train", bench)
    # One row per aux training sample, with the loader's paths and labels, in the same order.
    assert [row["path"] for row in rows] == listing.paths
    assert [CLASS_INDEX[row["label"]] for row in rows] == listing.labels.tolist()
    disagree = np.mean([row["label"] != row["true_label"] for row in rows])
    assert 0.05 <= disagree <= 0.60
    # The inconsistency is systematic: the named confusions dominate.
    pairs = {(row["true_label"], row["label"]) for row in rows if row["label"] != row["true_label"]}
    assert {("fear", "surprise"), ("sadness", "neutral")} <= pairs


def test_valence_and_arousal_follow_the_expression_with_annotation_noise(bench):
    listing = read_listing("affectnet", "train", bench)
    aux = listing.valence_arousal
    assert aux.shape == (2300, 2) and np.abs(aux).max() <= 1.0
    assert "valence/arousal outside [-1, 1]" not in listing.dropped  # only codes 9 and 10 carry AffectNet's -2
    with open(bench / "target_valence_arousal.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 100 + 60  # the target's train and test images, by their loader paths
    target = read_listing("rafdb", "train", bench)
    truth = synthetic.true_valence_arousal(bench, target.paths)
    assert truth.shape == (100, 2) and truth.dtype == np.float32

    def mean(values, labels, name):
        return values[labels == CLASS_INDEX[name]].mean(axis=0)

    for values, labels in ((aux, listing.labels), (truth, target.labels)):
        assert mean(values, labels, "happiness")[0] > 0.3 > -0.3 > mean(values, labels, "sadness")[0]
        assert mean(values, labels, "surprise")[1] > 0.4 > mean(values, labels, "neutral")[1]
    # The aux values carry the annotators' noise (sd 0.25), the target's true values none: within a
    # class, the aux valence spreads wider.
    spread = {name: values[labels == CLASS_INDEX["happiness"], 0].std()
              for name, values, labels in (("aux", aux, listing.labels), ("target", truth, target.labels))}
    assert spread["aux"] > spread["target"] + 0.05
    report = check_dataset("affectnet", bench, progress=False)
    assert -1.0 <= report["valence_arousal"]["train"]["valence"]["min"] < 0 < report["valence_arousal"]["train"]["valence"]["max"] <= 1.0


def test_deterministic_by_seed(tmp_path):
    def digest(root):
        files = sorted(p for p in root.rglob("*") if p.is_file())
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    # One drawing process or two: each chunk of faces has its own random stream.
    for name, seed, workers in (("a", 5, 1), ("b", 5, 2), ("c", 6, 1)):
        synthetic.generate(tmp_path / name, seed=seed, scale=0.02, workers=workers)
    a, b, c = digest(tmp_path / "a"), digest(tmp_path / "b"), digest(tmp_path / "c")
    assert a == b and len(a) > 500
    assert a["ground_truth.csv"] != c["ground_truth.csv"]


def test_synth_refuses_to_overwrite(bench):
    out = subprocess.run(
        [sys.executable, "-m", "sspa_ray.cli.main", "data", "synth", "--out", str(bench)],
        capture_output=True, text=True,
    )
    assert out.returncode == 2 and "already exists" in out.stderr and "Traceback" not in out.stderr


def test_target_synthetic_generates_once_and_fills_true_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("SSPA_CACHE_DIR", str(tmp_path / "cache"))
    cfg = make_config("synthetic", {"data.synthetic_scale": 0.1, "data.synthetic_seed": 2, "data.image_size": 16})
    joint = load_joint_data(cfg, progress=False)
    [root] = (tmp_path / "cache" / "synthetic").glob("v*-seed2-scale0.1")
    stamp = (root / "ground_truth.csv").stat().st_mtime_ns
    truth = {row["path"]: CLASS_INDEX[row["true_label"]] for row in _ground_truth(root)}
    assert joint.aux_true_labels.tolist() == [truth[p] for p in joint.aux_train.paths]
    assert (joint.aux_true_labels != joint.aux_train.labels).any()
    assert joint.target_train.images.shape[1:] == (16, 16, 3) and len(joint.test) == 60
    assert np.array_equal(joint.target_true_valence_arousal, synthetic.true_valence_arousal(root, joint.target_train.paths))
    again = load_joint_data(cfg, progress=False)
    assert (root / "ground_truth.csv").stat().st_mtime_ns == stamp  # not regenerated
    assert np.array_equal(again.aux_true_labels, joint.aux_true_labels)
    # The default share is the paper's 10%: 2.3x the target. Any share keeps the ground truth
    # aligned with the chosen samples.
    assert len(joint.aux_train) == pytest.approx(2.3 * len(joint.target_train), rel=0.05)
    cfg.set("data.aux_ratio", 1.0)
    whole = load_joint_data(cfg, progress=False)
    assert whole.aux_true_labels.tolist() == [truth[p] for p in whole.aux_train.paths]
    assert len(whole.aux_train) == len(truth) == 23 * len(joint.target_train)
    assert load_split("rafdb", "test", root, 16, progress=False).labels.tolist() == joint.test.labels.tolist()
