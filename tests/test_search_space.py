"""Search-space YAML: every shipped file loads, and every mistake is one line naming file, key and fix."""

from pathlib import Path

import pytest

from sspa_ray.errors import SpecError
from sspa_ray.specs.search_space import Distribution, load_search_space

SHIPPED = sorted((Path(__file__).resolve().parents[1] / "search_spaces").glob("*.yaml"))


def _write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_spaces_load_and_their_points_are_valid(path):
    space = load_search_space(path)
    assert space.name == path.stem
    assert space.space
    for target in ("synthetic", "rafdb", "caers"):
        assert space.check_points(target, {})


def test_shipped_names_cover_the_issue():
    assert {p.stem for p in SHIPPED} >= {"beta", "beta_optuna", "experts", "aux_ratio", "optim", "selection"}


def test_table7_grid_and_defaults():
    space = load_search_space(Path(__file__).resolve().parents[1] / "search_spaces" / "beta.yaml")
    assert space.space["pam.alpha"] == Distribution("grid", (1.0, 3.0, 5.0, 10.0))
    assert space.space["pam.beta"] == Distribution("grid", (1.0, 3.0, 5.0, 10.0))
    assert space.search == "grid" and space.scheduler == "none" and space.metric == "accuracy"


def test_full_schema_parses_and_coerces(tmp_path):
    path = _write(tmp_path, """
metric: accuracy
mode: min
search: optuna
num_samples: 7
scheduler: asha
grace_period: 2
max_t: 9
reduction_factor: 3
space:
  pam.alpha: {uniform: [0.5, 3]}
  train.lr: {loguniform: [0.001, 0.1]}
  moe.experts: {randint: [1, 5]}
  pam.beta: {quniform: [1, 5, 0.5]}
  model.backbone: {choice: [small, resnet18]}
  modules.moe: {choice: ["on", "off"]}
fixed:
  train.epochs: "6"
""")
    space = load_search_space(path)
    assert space.name == "space"  # the file's stem
    assert (space.metric, space.mode, space.search, space.num_samples) == ("accuracy", "min", "optuna", 7)
    assert (space.asha.grace_period, space.asha.max_t, space.asha.reduction_factor) == (2, 9, 3.0)
    assert space.space["moe.experts"] == Distribution("randint", (1, 5))
    assert space.space["pam.beta"] == Distribution("quniform", (1.0, 5.0, 0.5))
    assert space.space["modules.moe"].args == (True, False)
    assert space.fixed == {"train.epochs": 6}


@pytest.mark.parametrize(
    "body, needles",
    [
        ("space:\n  pam.alpah: {grid: [1, 2]}\n", ["space.pam.alpah", "did you mean pam.alpha?", ":2:"]),
        ("space:\n  pam.alpha: {uniform: [0, 3]}\n", ["space.pam.alpha", "lower bound", "(0.0, 1000.0]"]),
        ("space:\n  moe.experts: {grid: [0, 3]}\n", ["space.moe.experts", "[1, 64]"]),
        ("space:\n  data.aux_ratio: {grid: [0.5, 1.5]}\n", ["data.aux_ratio", "[0.0, 1.0]"]),
        ("space:\n  pam.alpha: {normal: [1, 2]}\n", ["unknown distribution 'normal'", "uniform"]),
        ("search: optuna\nspace:\n  pam.alpha: {grid: [1, 2]}\n", ["'grid' needs 'search: grid'", "choice"]),
        ("space:\n  moe.experts: {uniform: [1, 5]}\n", ["does not fit a key of type int", "randint"]),
        ("space:\n  pam.alpha: {uniform: [3, 1]}\n", ["are empty"]),
        ("space:\n  pam.alpha: {uniform: [1]}\n", ["expects 2 numbers"]),
        ("space:\n  pam.alpha: {grid: [1, 1]}\n", ["twice"]),
        ("space:\n  pam.alpha: [1, 2]\n", ["exactly one distribution"]),
        ("space:\n  pam.alpha: {grid: [1]}\n  pam.alpha: {grid: [2]}\n", [":3:", "duplicate key"]),
        ("space:\n  pam.alpha: {grid: [1]}\nfixed:\n  pam.alpha: 2\n", ["fixed.pam.alpha", "also in space"]),
        ("space:\n  pam.alpha: {grid: [1]}\nfixed:\n  train.epoch: 2\n", ["did you mean train.epochs?"]),
        ("metric: acc\nspace:\n  pam.alpha: {grid: [1]}\n", ["metric", "did you mean accuracy?"]),
        ("scheduler: hyperband\nspace:\n  pam.alpha: {grid: [1]}\n", ["scheduler", "none, asha"]),
        ("grace_period: 2\nspace:\n  pam.alpha: {grid: [1]}\n", ["grace_period", "scheduler: asha"]),
        ("scheduler: asha\ngrace_period: 4\nmax_t: 2\nspace:\n  pam.alpha: {grid: [1]}\n", ["max_t", ">= grace_period"]),
        ("num_samples: 0\nspace:\n  pam.alpha: {grid: [1]}\n", ["num_samples", ">= 1"]),
        ("spaces:\n  pam.alpha: {grid: [1]}\n", ["did you mean space?"]),
        ("name: a b\nspace:\n  pam.alpha: {grid: [1]}\n", ["name", "letters, digits"]),
        ("space: {}\n", ["space", "mapping of dotted config keys"]),
        ("space:\n  pam.alpha: {grid: [1, 2]\n", [":3:", "YAML"]),
        ("space: !!python/object:os.system {}\n", ["YAML"]),
        ("- just\n- a list\n", ["mapping"]),
    ],
)
def test_bad_spaces_are_one_line_errors_naming_file_and_key(tmp_path, body, needles):
    path = _write(tmp_path, body)
    with pytest.raises(SpecError) as info:
        load_search_space(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for needle in needles:
        assert needle in message


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SpecError, match="nope.yaml"):
        load_search_space(tmp_path / "nope.yaml")


def test_cross_key_rules_are_checked_on_the_extremes_of_the_space(tmp_path):
    path = _write(tmp_path, "search: random\nspace:\n  train.selection_epochs: {randint: [2, 20]}\n")
    space = load_search_space(path)
    with pytest.raises(SpecError, match=r"train.selection_epochs=20 .*exceeds train.epochs=12"):
        space.check_points("synthetic", {})
    assert len(space.check_points("synthetic", {"train.epochs": 30})) == 2
    # --set of a varied key replaces it in every point
    assert len(space.check_points("synthetic", {"train.selection_epochs": 3})) == 1
    bad_combo = _write(tmp_path, "space:\n  modules.ssm: {grid: [true, false]}\n", "combo.yaml")
    with pytest.raises(SpecError, match="modules.ssm=False .*PAM"):
        load_search_space(bad_combo).check_points("synthetic", {})
