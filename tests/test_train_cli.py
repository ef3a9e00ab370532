"""`sspa-ray train`: one run on data in the official layouts, its files, resume and errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sspa_ray.cli.main import cli
from sspa_ray.data import synthetic

# make test spreads tests over two workers (pytest-xdist, --dist loadgroup); this module's tests share
# module-scoped runs, so they stay together on one worker.
pytestmark = pytest.mark.xdist_group("test_train_cli")

FAST = [
    "--set", "model.backbone=small", "--set", "data.image_size=16", "--set", "train.epochs=3",
    "--set", "train.selection_epochs=2", "--set", "data.aux_ratio=0.1", "--set", "train.batch_size=32",
    "--set", "train.num_threads=1", "--set", "model.pretrained=none",
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A small benchmark written in the official RAF-DB and AffectNet layouts."""
    root = tmp_path_factory.mktemp("datasets")
    synthetic.generate(root, seed=0, scale=0.1, progress=False)
    return root


def train(*args):
    return CliRunner().invoke(cli, ["train", *args], catch_exceptions=False)


def without_timing(path):
    metrics = json.loads(Path(path).read_text())
    for row in metrics["history"]:
        row.pop("img_per_s")
    return metrics


@pytest.fixture(scope="module")
def finished(data_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    result = train("--target", "rafdb", "--aux", "affectnet", "--data-root", str(data_root), *FAST, "--out", str(run))
    assert result.exit_code == 0, result.output
    return run, result.output


def test_train_writes_config_metrics_selection_and_one_line_per_epoch(finished):
    run, output = finished
    lines = [line for line in output.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1:3] for line in lines] == [["1/3", "SS"], ["2/3", "SS"], ["3/3", "PA"]]
    assert all("loss" in line and "clean aux" in line and "acc" in line and "img/s" in line for line in lines)
    config = json.loads((run / "config.json").read_text())
    assert config["data.target"] == "rafdb" and config["data.image_size"] == 16 and "train.seed" in config
    metrics = json.loads((run / "metrics.json").read_text())
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1"))
    assert metrics["best"]["selected_on"] == "test" and len(metrics["history"]) == 3
    # Real layouts carry no ground truth: only the share kept, overall and per class.
    assert set(metrics["selection"]) == {"clean_share", "kept_per_class"}
    rows = (run / "selection.csv").read_text().splitlines()
    assert rows[0] == "path,source,label,clean"
    assert {r.split(",")[1] for r in rows[1:]} == {"target", "aux"}
    assert rows[1].split(",")[0].startswith("Image/aligned/")  # dataset-relative paths


def test_synthetic_target_reports_selection_quality(tmp_path):
    result = train("--target", "synthetic", "--set", "data.synthetic_scale=0.1", *FAST, "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    selection = json.loads((tmp_path / "r" / "metrics.json").read_text())["selection"]
    assert set(selection) == {"precision", "recall", "aux_base_rate", "clean_share", "kept_per_class"}


def test_sigkilled_cli_run_resumes_to_the_same_metrics(finished, data_root, tmp_path):
    reference, _ = finished
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SSPA_TEST_KILL_AT": "mid_epoch:2"}
    args = ["train", "--target", "rafdb", "--aux", "affectnet", "--data-root", str(data_root), *FAST, "--out", str(run)]
    killed = subprocess.run([sys.executable, "-m", "sspa_ray.cli.main", *args], env=env, capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert not (run / "metrics.json").exists() or len(without_timing(run / "metrics.json")["history"]) == 1
    resumed = train("--resume", str(run))
    assert resumed.exit_code == 0, resumed.output
    assert "resuming from epoch_0001" in resumed.output
    assert without_timing(run / "metrics.json") == without_timing(reference / "metrics.json")
    assert (run / "selection.csv").read_text() == (reference / "selection.csv").read_text()


@pytest.mark.parametrize("method,stages,figures", [
    ("scn", ["JT", "RL", "RL"], {"relabelling": {"relabelled_share"}}),
    ("dcjt", ["JT", "AX", "AX"], {"dcjt": {"aux_labels", "aux_images_used", "unmatched_list_lines"}}),
])
def test_a_rival_method_trains_on_real_layouts_and_resumes_bit_identically_after_a_sigkill(
        data_root, tmp_path, method, stages, figures):
    args = ["--target", "rafdb", "--aux", "affectnet", "--data-root", str(data_root), *FAST,
            "--set", f"method.name={method}", "--set", "scn.relabel_epoch=2", "--set", "dcjt.annotator_epochs=1"]
    reference = train(*args, "--out", str(tmp_path / "ref"))
    assert reference.exit_code == 0, reference.output
    assert [line.split()[2] for line in reference.output.splitlines() if line.startswith("epoch ")] == stages
    metrics = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    assert {section: set(metrics[section]) for section in figures} == figures  # real layouts: no ground truth
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SSPA_TEST_KILL_AT": "mid_epoch:3"}
    killed = subprocess.run([sys.executable, "-m", "sspa_ray.cli.main", "train", *args, "--out", str(run)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    resumed = train("--resume", str(run))
    assert resumed.exit_code == 0, resumed.output
    assert "resuming from epoch_0002" in resumed.output
    assert without_timing(run / "metrics.json") == without_timing(tmp_path / "ref" / "metrics.json")


def test_resume_of_a_finished_run_changes_nothing_and_accepts_execution_keys(finished):
    run, _ = finished
    before = without_timing(run / "metrics.json")
    result = train("--resume", str(run), "--set", "train.num_threads=1")
    assert result.exit_code == 0, result.output
    assert "final: accuracy" in result.output and not any(line.startswith("epoch ") for line in result.output.splitlines())
    assert without_timing(run / "metrics.json") == before


def test_run_folder_errors_are_one_line_exit_2(finished, data_root, tmp_path):
    run, _ = finished
    cases = [
        (["--target", "rafdb", "--data-root", str(data_root), "--out", str(run)], "already exists"),
        (["--resume", str(tmp_path)], "no run there"),
        (["--resume", str(run), "--set", "pam.alpha=2"], "drop --set pam.alpha"),
        (["--resume", str(run), "--target", "caers"], "drop --target"),
        (["--out", str(tmp_path / "x"), "--set", "pam.alpah=2"], "did you mean pam.alpha"),
        (["--target", "synthetic"], "exactly one of --out"),
        (["--target", "rafdb", "--data-root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y")], "not a folder"),
    ]
    for args, message in cases:
        result = train(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_overwrite_replaces_a_run_but_never_a_foreign_folder(data_root, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    result = train("--target", "synthetic", "--out", str(foreign), "--overwrite")
    assert result.exit_code == 2 and "refusing" in result.output
    assert (foreign / "notes.txt").exists()
    run = tmp_path / "run"
    args = ["--target", "rafdb", "--data-root", str(data_root), *FAST, "--set", "train.epochs=1",
            "--set", "train.selection_epochs=1", "--out", str(run)]
    assert train(*args).exit_code == 0
    (run / "stale.txt").write_text("old")
    result = train(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    assert not (run / "stale.txt").exists() and (run / "metrics.json").exists()
