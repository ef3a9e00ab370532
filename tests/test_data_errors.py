"""Bad dataset input through the real CLI: exit code 2, one line naming the file (and line), no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _layouts import make_affectnet, make_caers, make_rafdb


def _check(dataset: str, root: Path, tmp_path: Path) -> tuple[int, str]:
    out = subprocess.run(
        [sys.executable, "-m", "sspa_ray.cli.main", "data", "check", dataset, "--data-root", str(root)],
        capture_output=True, text=True, env={**os.environ, "SSPA_CACHE_DIR": str(tmp_path / "cache")},
    )
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:") or "Traceback" in line]
    assert "Traceback" not in out.stderr, out.stderr
    assert len(lines) == 1, out.stderr
    return out.returncode, lines[0]


def _malformed_rafdb_line(root: Path) -> str:
    label_file = make_rafdb(root) / "EmoLabel" / "list_patition_label.txt"
    lines = label_file.read_text().splitlines()
    lines[6] = "train_00007.jpg eight"
    label_file.write_text("\n".join(lines) + "\n")
    return f"{label_file}:7"


def _missing_csv_column(root: Path) -> str:
    csv_file = make_affectnet(root) / "Manually_Annotated_file_lists" / "training.csv"
    text = csv_file.read_text().replace(" expression,", " emotion,", 1)
    csv_file.write_text(text)
    return f"{csv_file}:1: missing column 'expression'"


def _corrupt_image(root: Path) -> str:
    image = make_rafdb(root) / "Image" / "aligned" / "test_0003_aligned.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG any more")
    return f"corrupt image {image}"


def _truncated_image(root: Path) -> str:
    image = make_caers(root) / "test" / "Sad" / "0002.jpg"
    image.write_bytes(image.read_bytes()[:200])
    return str(image)


def _missing_image(root: Path) -> str:
    image = make_affectnet(root) / "Manually_Annotated_Images" / "101" / "val0004.jpg"
    image.unlink()
    return f"missing image {image}"


def _missing_class_folder(root: Path) -> str:
    folder = make_caers(root) / "test" / "Fear"
    shutil.rmtree(folder)
    return f"missing folder {folder}"


def _missing_dataset_folder(root: Path) -> str:
    make_caers(root)
    return f"missing folder {root / 'rafdb'}"


@pytest.mark.parametrize(
    "dataset, breaker",
    [
        ("rafdb", _malformed_rafdb_line),
        ("affectnet", _missing_csv_column),
        ("rafdb", _corrupt_image),
        ("caers", _truncated_image),
        ("affectnet", _missing_image),
        ("caers", _missing_class_folder),
        ("rafdb", _missing_dataset_folder),
    ],
    ids=lambda value: value.__name__.strip("_") if callable(value) else value,
)
def test_data_check_names_the_problem(tmp_path, dataset, breaker):
    root = tmp_path / "data"
    expected = breaker(root)
    code, line = _check(dataset, root, tmp_path)
    assert code == 2
    assert expected in line


def test_malformed_affectnet_row_names_its_line(tmp_path):
    csv_file = make_affectnet(tmp_path) / "Manually_Annotated_file_lists" / "validation.csv"
    lines = csv_file.read_text().splitlines()
    fields = lines[3].split(",")
    fields[1] = "ten"  # the face_x of the third row, on line 4
    lines[3] = ",".join(fields)
    csv_file.write_text("\n".join(lines) + "\n")
    code, line = _check("affectnet", tmp_path, tmp_path)
    assert code == 2 and f"{csv_file}:4: malformed row" in line
