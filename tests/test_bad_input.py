"""The bad-input catalogue, walked through the real `sspa-ray` console script.

Every case must end with exit code 2, a short message naming the problem, no traceback, and no
Ray session: each run gets its own RAY_TMPDIR, which must still be empty afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _layouts import make_affectnet, make_caers, make_rafdb
from conftest import mount_tmpfs

SSPA = [sys.executable, "-m", "sspa_ray.cli.main"]
QUICK = ["--set", "train.epochs=1", "--set", "train.selection_epochs=1", "--set", "model.pretrained=none"]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _rafdb_with_bad_line(root: Path) -> Path:
    make_rafdb(root)
    labels = root / "rafdb" / "EmoLabel" / "list_patition_label.txt"
    lines = labels.read_text().splitlines()
    lines[3] = "train_00004.jpg five"
    labels.write_text("\n".join(lines) + "\n")
    return root


def _affectnet_without_expression(root: Path) -> Path:
    make_rafdb(root)
    make_affectnet(root)
    csv = root / "affectnet" / "Manually_Annotated_file_lists" / "training.csv"
    csv.write_text(csv.read_text().replace(" expression,", " emotion,", 1))
    return root


def _rafdb_with_corrupt_image(root: Path) -> Path:
    make_rafdb(root)
    image = root / "rafdb" / "Image" / "aligned" / "train_00002_aligned.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    return root


def _rafdb_with_missing_image(root: Path) -> Path:
    make_rafdb(root)
    (root / "rafdb" / "Image" / "aligned" / "train_00003_aligned.jpg").unlink()
    return root


# (id, argv builder taking tmp_path, words the one-line message must contain)
CASES = [
    ("yaml-missing", lambda t: ["tune", str(t / "nope.yaml")], ["nope.yaml"]),
    ("yaml-syntax", lambda t: ["tune", str(_write(t / "s.yaml", "space:\n  pam.alpha: {grid: [1, 3\n"))], ["s.yaml", "line"]),
    ("unknown-key-set", lambda t: ["train", "--out", str(t / "r"), "--set", "pam.alpah=3"], ["pam.alpah", "did you mean pam.alpha"]),
    ("unknown-key-yaml", lambda t: ["tune", str(_write(t / "s.yaml", "space:\n  pam.alpah: {grid: [1, 3]}\n"))], ["pam.alpah", "pam.alpha"]),
    ("alpha-not-positive", lambda t: ["train", "--out", str(t / "r"), "--set", "pam.alpha=0"], ["pam.alpha"]),
    ("alpha-range-in-space", lambda t: ["tune", str(_write(t / "s.yaml", "search: random\nnum_samples: 2\nspace:\n  pam.alpha: {uniform: [0, 3]}\n"))], ["pam.alpha"]),
    ("experts-below-one", lambda t: ["ablate", "--out", str(t / "e"), "--set", "moe.experts=0"], ["moe.experts"]),
    ("aux-ratio-out-of-range", lambda t: ["train", "--out", str(t / "r"), "--set", "data.aux_ratio=1.5"], ["data.aux_ratio"]),
    ("selection-after-end", lambda t: ["train", "--out", str(t / "r"), "--set", "train.epochs=3", "--set", "train.selection_epochs=5"], ["train.selection_epochs"]),
    ("unknown-key-ablation-yaml", lambda t: ["ablate", str(_write(t / "a.yaml", "name: t\ntitle: T\nrows:\n  - {moe.experts: 1}\n  - {moe.expert: 3}\n")), "--out", str(t / "e")], ["a.yaml:5:", "moe.expert", "did you mean moe.experts"]),
    ("unknown-distribution", lambda t: ["tune", str(_write(t / "s.yaml", "space:\n  pam.alpha: {gaussian: [1, 3]}\n"))], ["gaussian"]),
    ("malformed-set", lambda t: ["train", "--out", str(t / "r"), "--set", "pam.alpha"], ["KEY=VALUE"]),
    ("pam-without-ssm", lambda t: ["ablate", "--out", str(t / "e"), "--set", "modules.ssm=false", "--set", "modules.pam=true"], ["modules.ssm"]),
    ("unknown-target", lambda t: ["train", "--target", "fer2013", "--out", str(t / "r")], ["fer2013"]),
    ("unknown-preset", lambda t: ["ablate", "--preset", "tabel5", "--out", str(t / "e")], ["tabel5"]),
    ("missing-data-root", lambda t: ["train", "--target", "rafdb", "--out", str(t / "r")], ["--data-root"]),
    ("missing-dataset-folder", lambda t: ["train", "--target", "caers", "--data-root", str(t), "--out", str(t / "r")], ["caers"]),
    ("missing-dataset-folder-ablate", lambda t: ["ablate", "--target", "rafdb", "--data-root", str(t), "--out", str(t / "e")], ["rafdb"]),
    ("malformed-label-line", lambda t: ["train", "--target", "rafdb", "--aux", "none", "--data-root", str(_rafdb_with_bad_line(t)), "--out", str(t / "r"), *QUICK], ["list_patition_label.txt", "4"]),
    ("missing-csv-column", lambda t: ["train", "--target", "rafdb", "--data-root", str(_affectnet_without_expression(t)), "--out", str(t / "r"), *QUICK], ["training.csv", "expression"]),
    ("corrupt-image", lambda t: ["train", "--target", "rafdb", "--aux", "none", "--data-root", str(_rafdb_with_corrupt_image(t)), "--out", str(t / "r"), *QUICK], ["train_00002_aligned.jpg"]),
    ("missing-image", lambda t: ["train", "--target", "rafdb", "--aux", "none", "--data-root", str(_rafdb_with_missing_image(t)), "--out", str(t / "r"), *QUICK], ["train_00003_aligned.jpg"]),
    ("data-check-missing-folder", lambda t: ["data", "check", "affectnet", "--data-root", str(t)], ["affectnet"]),
    ("resume-train-without-run", lambda t: ["train", "--resume", str((t / "empty").mkdir() or t / "empty")], ["empty"]),
    ("resume-ablate-without-run", lambda t: ["ablate", "--out", str((t / "empty").mkdir() or t / "empty"), "--resume"], ["empty"]),
    ("out-unwritable-train", lambda t: ["train", "--out", str(_write(t / "file", "") / "run")], ["not writable"]),
    ("out-unwritable-ablate", lambda t: ["ablate", "--out", str(_write(t / "file", "") / "exp")], ["not writable"]),
    ("out-exists", lambda t: ["train", "--out", str(_write(t / "r" / "config.json", "{}").parent)], ["--resume", "--overwrite"]),
]


@pytest.mark.parametrize("build, needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_no_ray(tmp_path, build, needles):
    ray_tmp = tmp_path / "raytmp"
    ray_tmp.mkdir()
    env = dict(os.environ, RAY_TMPDIR=str(ray_tmp), SSPA_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("SSPA_DATA_ROOT", None)
    argv = build(tmp_path)
    proc = subprocess.run(SSPA + argv, capture_output=True, text=True, env=env, timeout=300)
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 2, output
    assert "Traceback" not in output, output
    error_lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and len(output.splitlines()) <= 4, output
    for needle in needles:
        assert needle in error_lines[0], output
    assert not any(ray_tmp.iterdir()), "a Ray session was started"


def test_caers_face_box_layout_is_accepted(tmp_path):
    # Guard for the catalogue: the CAER-S builder itself yields a valid dataset.
    make_caers(tmp_path, boxes=True)
    proc = subprocess.run(SSPA + ["data", "check", "caers", "--data-root", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_a_full_output_disk_is_one_line_and_the_run_resumes(tmp_path):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "256k")  # a real full file system
    try:
        run = disk / "run"
        argv = ["train", "--out", str(run), "--set", "data.synthetic_scale=0.1", *QUICK]
        proc = subprocess.run(SSPA + argv, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr and "No space left on device" in proc.stderr
        assert (run / "config.json").is_file()  # what was written before the disk filled stays
    finally:
        subprocess.run(["umount", str(disk)], check=False)
