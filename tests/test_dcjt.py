"""DCJT behind the method seam: its aux schedule, the class-balanced sampler, DCJT's relabelled list,
and DCJT trained end to end (with its annotator's cache and an exact resume after SIGKILL)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_engine import BASE, easy_data, without_timing

from sspa_ray.data import JointData
from sspa_ray.data.relabelled_list import read_relabelled_list
from sspa_ray.defaults import make_config
from sspa_ray.engine import fit
from sspa_ray.engine.methods.dcjt import approximate_relabels, aux_epochs, balanced_draws, va_weight
from sspa_ray.errors import ConfigError, DataError
from sspa_ray.labels import CLASS_INDEX


@pytest.mark.parametrize("epochs,expected", [
    (120, [39, 49, 59, 69, 79, 89, 99, 109, 119]),   # the reference's own schedule
    (12, [3, 4, 5, 6, 7, 8, 9, 10, 11]),              # the synthetic target: nine passes, as the reference
    (80, [20, 27, 34, 41, 48, 55, 62, 69, 76]),       # the paper's 80 epochs
    (24, [7, 9, 11, 13, 15, 17, 19, 21, 23]),
    (4, [1, 2, 3]),
])
def test_the_aux_passes_follow_the_reference_schedule_scaled_to_the_epochs(epochs, expected):
    assert aux_epochs(make_config("synthetic", {"train.epochs": epochs})) == expected


def test_the_aux_schedule_keys_override_the_scaling():
    cfg = make_config("synthetic", {"train.epochs": 10, "dcjt.aux_period": 3, "dcjt.aux_start": 0})
    assert aux_epochs(cfg) == [2, 5, 8]
    assert aux_epochs(make_config("synthetic", {"train.epochs": 10, "dcjt.aux_start": 10})) == []


def test_lambda_is_the_references_with_its_adam_and_a_tenth_with_the_shared_sgd():
    assert va_weight(make_config("synthetic", {"method.recipe": "own"})) == 15
    assert va_weight(make_config("synthetic", {})) == 0.1
    assert va_weight(make_config("synthetic", {"dcjt.va_weight": 4})) == 4


def test_the_aux_sampler_draws_every_class_equally_often_with_replacement():
    labels = np.repeat([0, 1, 2, 5], [900, 90, 9, 1])  # 1000 images, classes 3, 4 and 6 absent
    drawn = balanced_draws(labels, 40_000, np.random.default_rng(0))
    shares = np.bincount(labels[drawn], minlength=7) / len(drawn)
    assert shares[[3, 4, 6]].tolist() == [0, 0, 0]
    assert shares[[0, 1, 2, 5]] == pytest.approx([0.25] * 4, abs=0.015)
    assert len(np.unique(drawn[labels[drawn] == 5])) == 1  # the one image of class 5, drawn ~10,000 times


def test_the_approximate_relabelling_takes_only_a_confident_disagreement():
    probabilities = np.array([[0.70, 0.20, 0.10],   # given 1: 0.70 - 0.20 = 0.50 > 0.2, relabelled to 0
                              [0.45, 0.35, 0.20],   # given 1: 0.45 - 0.35 = 0.10, kept
                              [0.10, 0.10, 0.80]])  # given 2, its argmax: kept
    assert approximate_relabels(probabilities, np.array([1, 1, 2]), 0.2).tolist() == [0, 1, 2]
    assert approximate_relabels(probabilities, np.array([1, 1, 2]), 0.05).tolist() == [0, 0, 2]


AUX_PATHS = ["Manually_Annotated_Images/1/a.jpg", "Manually_Annotated_Images/1/b.jpg", "Manually_Annotated_Images/2/c.jpg"]


def test_a_relabelled_list_is_read_by_path_suffix_in_rafdb_order(tmp_path):
    listing = tmp_path / "RelabeledAffectnet.txt"
    listing.write_text("/NAS/frank/AffectNet/Manually_Annotated_Images/2/c.jpg 0 0.5 -0.25\n"
                       "\n"
                       "/NAS/frank/AffectNet/Manually_Annotated_Images/1/a.jpg 3 -1 1\n"
                       "/NAS/frank/AffectNet/Manually_Annotated_Images/9/z.jpg 6 0 0\n")
    read = read_relabelled_list(listing, AUX_PATHS)
    # 0 is RAF-DB's code 1 (surprise), 3 its code 4 (happiness); b.jpg has no line.
    assert read.labels.tolist() == [CLASS_INDEX["happiness"], -1, CLASS_INDEX["surprise"]]
    assert read.valence_arousal[0].tolist() == [-1, 1] and read.valence_arousal[2].tolist() == [0.5, -0.25]
    assert np.isnan(read.valence_arousal[1]).all() and read.listed.tolist() == [True, False, True]
    assert read.unmatched_lines == 1


@pytest.mark.parametrize("line,problem", [
    ("x/1/a.jpg 3 0.1", "expected 'path label valence arousal', got 3 fields"),
    ("x/1/a.jpg 7 0.1 0.2", "label 7 is outside 0..6"),
    ("x/1/a.jpg happy 0.1 0.2", "label 'happy' is not an integer"),
    ("x/1/a.jpg 3 1.5 0.2", "valence 1.5 is outside [-1, 1]"),
    ("x/1/a.jpg 3 0.1 nan", "arousal nan is outside [-1, 1]"),
    ("x/1/a.jpg 3 0.1 high", "arousal 'high' is not a number"),
    ("x/1/b.jpg 3 0.1 0.2\nx/1/b.jpg 2 0.1 0.2", "Manually_Annotated_Images/1/b.jpg is listed twice (first at line 2)"),
])
def test_a_bad_line_is_one_error_naming_file_and_line(tmp_path, line, problem):
    listing = tmp_path / "list.txt"
    listing.write_text("x/Manually_Annotated_Images/2/c.jpg 1 0 0\n" + line.replace("x/", "x/Manually_Annotated_Images/"))
    with pytest.raises(DataError) as caught:
        read_relabelled_list(listing, AUX_PATHS)
    where = 3 if "twice" in problem else 2
    assert str(caught.value).startswith(f"{listing}:{where}: ") and problem in str(caught.value)


def test_a_list_naming_no_aux_image_or_missing_is_one_error(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("/elsewhere/x.jpg 1 0 0\n")
    with pytest.raises(DataError, match="no line names an aux image of this run"):
        read_relabelled_list(listing, AUX_PATHS)
    with pytest.raises(DataError, match="no such file"):
        read_relabelled_list(tmp_path / "absent.txt", AUX_PATHS)


def va_data(seed=0) -> JointData:
    """easy_data with valence/arousal: a class's own point in [-1, 1]^2 plus noise, for both sets."""
    data = easy_data(seed)
    rng = np.random.default_rng(seed + 100)
    centres = np.linspace(-0.8, 0.8, 7)

    def va(labels):
        point = np.stack([centres[labels], centres[::-1][labels]], axis=1)
        return (point + rng.normal(0, 0.05, point.shape)).clip(-1, 1).astype(np.float32)

    aux = data.aux_train
    aux.valence_arousal = va(data.aux_true_labels)  # valence/arousal follow the face, not its (noisy) label
    return JointData(data.target_train, aux, data.test, data.aux_true_labels,
                     target_true_valence_arousal=va(data.target_train.labels))


DCJT = {**BASE, "method.name": "dcjt", "dcjt.annotator_epochs": 3}


def test_dcjt_trains_with_aux_passes_on_schedule_and_measures_its_inputs(tmp_path):
    metrics = fit(make_config("synthetic", DCJT), tmp_path / "run", data=va_data(), log=lambda _: None)
    # 4 epochs: the aux set is passed over in epochs 1..3 (0-based), so 5 target + 5 aux batches each.
    assert [r["stage"] for r in metrics["history"]] == ["JT", "AX", "AX", "AX"]
    assert metrics["accuracy"] > 0.5
    figures = metrics["dcjt"]
    assert figures["aux_labels"] == "approximated (annotator)" and figures["aux_images_used"] == 160
    assert figures["pseudo_va_rmse"] < 0.6  # better than predicting 0 (RMS of the true values ~0.6)
    assert figures["aux_label_accuracy"] > figures["aux_base_rate"]  # relabelling beats the given labels
    # A second run reads the annotator from the cache: the same inputs, the same metrics.
    again = fit(make_config("synthetic", DCJT), tmp_path / "again", data=va_data(), log=lambda _: None)
    assert without_timing(again) == without_timing(metrics)


def test_dcjt_with_its_list_is_faithful_and_trains_only_on_listed_images(tmp_path):
    data = va_data()
    listing = tmp_path / "list.txt"
    truth = data.aux_true_labels
    rafdb_order = {CLASS_INDEX[n]: code - 1 for code, n in
                   {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}.items()}
    listing.write_text("".join(f"/data/{p} {rafdb_order[t]} 0.1 -0.1\n"
                               for p, t in list(zip(data.aux_train.paths, truth, strict=True))[:100]))
    cfg = make_config("synthetic", DCJT, {"dcjt.aux_labels": str(listing)})
    metrics = fit(cfg, tmp_path / "run", data=data, log=lambda _: None)
    assert metrics["dcjt"]["aux_labels"] == "DCJT's list" and metrics["dcjt"]["aux_images_used"] == 100
    assert metrics["dcjt"]["aux_label_accuracy"] == 1.0


def test_dcjt_without_aux_valence_arousal_or_aux_set_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="needs valence and arousal"):
        fit(make_config("synthetic", DCJT), tmp_path / "a", data=easy_data(), log=lambda _: None)
    with pytest.raises(ConfigError, match="trains on an aux set"):
        fit(make_config("synthetic", DCJT), tmp_path / "b", data=easy_data(aux=False), log=lambda _: None)


RUNNER = """
import sys
sys.path.insert(0, {tests!r})
from test_dcjt import DCJT, va_data
from sspa_ray.defaults import make_config
from sspa_ray.engine import fit
fit(make_config("synthetic", DCJT), sys.argv[1], data=va_data(), log=print)
"""


def test_dcjt_resumes_bit_identically_after_a_sigkill_mid_epoch(tmp_path):
    reference = fit(make_config("synthetic", DCJT), tmp_path / "ref", data=va_data(), log=lambda _: None)
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(tests=str(Path(__file__).parent)))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SSPA_TEST_KILL_AT": "mid_epoch:3"}
    killed = subprocess.run([sys.executable, str(script), str(run)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -9, killed.stderr
    lines = []
    resumed = fit(make_config("synthetic", DCJT), run, data=va_data(), resume=True, log=lines.append)
    assert "resuming from epoch_0002" in lines
    assert without_timing(resumed) == without_timing(reference)
