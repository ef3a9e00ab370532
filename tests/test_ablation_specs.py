"""Every ablation preset expands to exactly the configurations of its paper table."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sspa_ray.defaults import make_config
from sspa_ray.errors import SpecError
from sspa_ray.specs import load_ablation, preset_names, resolve_preset

REPO = Path(__file__).resolve().parents[1]
BACKBONES = {"resnet18", "arm"}
MODULE_KEYS = ("modules.ssm", "modules.fix_target", "modules.moe", "modules.pam")
# Table 5's nine patterns, in the paper's order: (SSM, D_T fixed, MoE, PAM).
TABLE5 = [
    (False, False, False, False), (True, False, False, False), (True, True, False, False),
    (True, False, True, False), (True, False, False, True), (True, True, True, False),
    (True, True, False, True), (True, False, True, True), (True, True, True, True),
]
RATIOS = [0.0, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0]
ALL_ON = (True, True, True, True)
ALL_OFF = (False, False, False, False)


def configs(name, target, overrides=None, seeds=None):
    spec = load_ablation(name)
    return spec, [(t.row, make_config(target, t.overrides)) for t in spec.trials(target, overrides or {}, seeds)]


def pattern(cfg):
    return tuple(cfg.get(k) for k in MODULE_KEYS)


def test_every_preset_in_the_folder_is_checked_here():
    assert preset_names() == sorted(["modules", "experts", "beta", "aux_ratio", "direct_merge", "strategies"])
    assert {p.stem for p in (REPO / "ablations").glob("*.yaml")} == set(preset_names())


def test_modules_is_table5_across_both_backbones():
    spec, trials = configs("modules", "rafdb")
    assert len(spec.rows) == 9 and len(trials) == 18
    for backbone in BACKBONES:
        patterns = [pattern(c) for _, c in trials if c.model.backbone == backbone]
        assert patterns == TABLE5
    assert {c.data.aux_ratio for _, c in trials} == {0.1}
    assert [row for row, _ in trials] == list(range(9)) * 2
    assert [spec.row_name(i) for i in (0, 2, 8)] == ["none", "SSM + D_T fixed", "SSM + D_T fixed + MoE + PAM"]
    # The reference sits beside the right rows, including the corrected fifth ARM row.
    assert spec.reference.lookup("rafdb", {"model.backbone": "arm"}, 8)["accuracy"] == 92.44
    assert spec.reference.lookup("rafdb", {"model.backbone": "arm"}, 4)["macro_recall"] == 75.44
    assert spec.reference.lookup("rafdb", {"model.backbone": "resnet18"}, 8)["macro_f1"] is None


def test_synthetic_runs_exactly_the_nine_module_rows_on_its_own_defaults():
    _, trials = configs("modules", "synthetic")
    assert [pattern(c) for _, c in trials] == TABLE5
    assert {c.model.backbone for _, c in trials} == {"small"}
    assert {c.data.aux_ratio for _, c in trials} == {make_config("synthetic").data.aux_ratio} == {0.1}


def test_caers_keeps_its_own_aux_share():
    _, trials = configs("modules", "caers")
    assert len(trials) == 18 and {c.data.aux_ratio for _, c in trials} == {0.2}


def test_experts_is_table6():
    _, trials = configs("experts", "rafdb")
    assert [c.moe.experts for _, c in trials] == [1, 2, 3, 5, 10]
    assert all(c.model.backbone == "arm" and c.data.aux_ratio == 0.1 and pattern(c) == ALL_ON for _, c in trials)


def test_beta_is_the_table7_grid():
    spec, trials = configs("beta", "rafdb")
    grid = [(c.pam.beta, c.pam.alpha) for _, c in trials]
    assert grid == [(b, a) for b in (1.0, 3.0, 5.0, 10.0) for a in (1.0, 3.0, 5.0, 10.0)]
    assert spec.grid == ("pam.beta", "pam.alpha")
    assert spec.rows[spec.baseline] == {"pam.beta": 1.0, "pam.alpha": 5.0}
    assert spec.reference.lookup("rafdb", {}, spec.baseline)["accuracy"] == 92.44


@pytest.mark.parametrize("name, modules", [("aux_ratio", ALL_ON), ("direct_merge", ALL_OFF)])
def test_ratio_presets_are_tables_8_and_9(name, modules):
    spec, trials = configs(name, "rafdb")
    assert len(trials) == 14
    for backbone in BACKBONES:
        assert [c.data.aux_ratio for _, c in trials if c.model.backbone == backbone] == RATIOS
    # 0% is the target alone with every module off in both tables (the run the paper quotes there).
    assert {pattern(c) for _, c in trials if c.data.aux_ratio > 0} == {modules}
    assert {pattern(c) for _, c in trials if c.data.aux_ratio == 0} == {ALL_OFF}
    arm = [spec.reference.lookup("rafdb", {"model.backbone": "arm"}, i) for i in range(7)]
    assert (arm[5] is None) == (name == "aux_ratio")  # Table 8 has no 50% row for ARM


@pytest.mark.parametrize("target, share", [("rafdb", 0.1), ("caers", 0.2)])
def test_strategies_are_tables_3_and_4(target, share):
    spec, trials = configs("strategies", target)
    assert len(trials) == 10
    arm = [c for _, c in trials if c.model.backbone == "arm"]
    assert arm[0].data.aux_ratio == 0 and pattern(arm[0]) == ALL_OFF
    assert arm[1].data.aux == "affectnet" and arm[1].data.aux_ratio == 1.0 and pattern(arm[1]) == ALL_OFF
    assert arm[2].method.name == "scn" and arm[2].data.aux_ratio == 1.0
    assert arm[3].method.name == "dcjt" and arm[3].data.aux_ratio == 1.0
    assert arm[4].data.aux_ratio == share and pattern(arm[4]) == ALL_ON and arm[4].method.name == "sspa_jt"
    assert spec.reference.lookup(target, {"model.backbone": "arm"}, 4)["accuracy"] == {"rafdb": 92.44, "caers": 98.22}[target]
    assert spec.reference.lookup(target, {"model.backbone": "arm"}, 3)["accuracy"] == {"rafdb": 92.24, "caers": 94.57}[target]
    assert spec.reference.lookup(target, {"model.backbone": "resnet18"}, 2)["accuracy"] == {"rafdb": 88.14, "caers": 84.31}[target]


def test_set_overrides_rows_and_across_and_duplicates_collapse():
    _, trials = configs("modules", "rafdb", {"model.backbone": "small"})
    assert len(trials) == 9 and {c.model.backbone for _, c in trials} == {"small"}
    # Forcing MoE on merges the rows that differ only in MoE: five distinct patterns remain.
    _, trials = configs("modules", "rafdb", {"modules.moe": True})
    assert len(trials) == 10
    assert {pattern(c) for _, c in trials} == {
        (False, False, True, False), (True, False, True, False), (True, True, True, False),
        (True, False, True, True), (True, True, True, True)}


def test_seeds_count_up_from_the_base_seed():
    _, trials = configs("experts", "rafdb", {"train.seed": 10}, seeds=3)
    assert len(trials) == 15
    assert [c.train.seed for row, c in trials if row == 0] == [10, 11, 12]
    with pytest.raises(SpecError, match="--seeds"):
        load_ablation("experts").trials("rafdb", {}, seeds=0)


def test_an_invalid_trial_names_the_row_and_the_set():
    with pytest.raises(SpecError, match=r"rows\[0\] \{modules\.ssm: false, .*\} and --set modules\.pam=true on target synthetic: modules\.pam=true needs"):
        load_ablation("modules").trials("synthetic", {"modules.pam": True})


def test_resolve_preset_by_name_and_by_path(tmp_path):
    assert resolve_preset("beta") == REPO / "ablations" / "beta.yaml"
    copy = tmp_path / "mine.yaml"
    copy.write_text((REPO / "ablations" / "experts.yaml").read_text())
    assert load_ablation(str(copy)).name == "experts"
    with pytest.raises(SpecError, match="unknown ablation preset 'modulez'.*aux_ratio, beta, direct_merge"):
        resolve_preset("modulez")
    with pytest.raises(SpecError, match="does not exist"):
        resolve_preset(str(tmp_path / "missing.yaml"))


GOOD = """\
name: t
title: T
layout: list
rows:
  - {moe.experts: 1}
  - {moe.experts: 3}
"""


@pytest.mark.parametrize("text, message", [
    ("name: t\ntitle: T\nrows: [{moe.experts: 1}\n", r"bad\.yaml:4: invalid YAML"),
    (GOOD + "row: []\n", r"unknown key 'row': did you mean rows\?"),
    (GOOD.replace("moe.experts: 1", "moe.expert: 1"), r"rows\[0\]\.moe\.expert: unknown config key.*did you mean moe\.experts\?"),
    (GOOD.replace("moe.experts: 1", "pam.alpha: -1"), r"rows\[0\]\.pam\.alpha.*out of range"),
    (GOOD.replace("moe.experts: 1", "data.target: rafdb"), r"rows\[0\]\.data\.target cannot be set.*--target"),
    (GOOD.replace("moe.experts: 3", "moe.experts: 1"), r"rows\[1\] repeats rows\[0\]"),
    (GOOD.replace("layout: list", "layout: gird"), r"unknown key 'layout: gird': did you mean grid\?"),
    (GOOD.replace("layout: list", "layout: grid"), r"layout: grid needs 'grid: \[ROW_KEY, COLUMN_KEY\]'"),
    (GOOD + "metrics: [accuracy, f1]\n", r"unknown key 'metrics: f1'"),
    (GOOD + "across: {moe.experts: [1, 2]}\n", r"across\.moe\.experts is also set in rows"),
    (GOOD + "only_for: {model.backbone: [rafdb]}\n", r"only_for\.model\.backbone names a key that no row"),
    (GOOD + "baseline: 2\n", r"baseline 2 is not a row index; choose 0\.\.1"),
    (GOOD + "reference: {rafdb: [91.3]}\n", r"reference\.rafdb must list one entry per row \(2\)"),
    (GOOD + "reference: {rafdb: [[1, 2], null]}\n", r"reference\.rafdb\[0\] must give 4 numbers"),
    ("- just\n- a list\n", r"expected a mapping of keys at the top level"),
])
def test_bad_yaml_is_one_line_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=message) as info:
        load_ablation(str(path))
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("text, line", [
    (GOOD + "row: []\n", 7),
    (GOOD.replace("moe.experts: 3", "moe.expert: 3"), 6),
    (GOOD.replace("layout: list", "layout: gird"), 3),
    (GOOD + "across:\n  model.backbone: [small, resnet19]\n", 8),
    (GOOD + "reference:\n  rafdb:\n    - [1, 2, 3, 4]\n    - [1, 2]\n", 10),
    (GOOD + "rows: []\n", 7),   # a duplicate key, which YAML alone would silently collapse
])
def test_errors_name_the_line_of_the_bad_entry(tmp_path, text, line):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_ablation(str(path))
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_good_yaml_parses(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD + "seeds: 2\nreference: {metrics: [accuracy], caers: [90.1, null]}\n")
    spec = load_ablation(str(path))
    assert (spec.layout, spec.seeds, len(spec.trials("caers"))) == ("list", 2, 4)
    assert spec.reference.lookup("caers", {}, 0) == {"accuracy": 90.1}


def test_a_wheel_ships_the_presets_and_finds_them_through_the_installed_package(tmp_path):
    # Build from a copy so the checkout gets no build/ folder; read the presets from the unpacked
    # wheel in a fresh interpreter, where the wheel's sspa_ray comes first on the path.
    src = tmp_path / "src"
    for name in ("pyproject.toml", "README.md"):
        src.mkdir(exist_ok=True)
        shutil.copy(REPO / name, src / name)
    for name in ("sspa_ray", "cli", "ablations"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {Path(n).stem for n in names if n.startswith("sspa_ray/presets/") and n.endswith(".yaml")} == set(preset_names())
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    code = ("import sspa_ray, sspa_ray.specs as s; print(sspa_ray.__file__); "
            "print(' '.join(s.preset_names())); print(s.load_ablation('beta').name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(tmp_path / "site")}).stdout.split("\n")
    assert out[0].startswith(str(tmp_path / "site"))
    assert out[1].split() == preset_names() and out[2] == load_ablation("beta").name
