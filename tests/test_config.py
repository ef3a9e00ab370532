import pytest

from sspa_ray import config, defaults
from sspa_ray.errors import ConfigError


def test_paper_defaults():
    cfg = defaults.make_config("rafdb")
    flat = cfg.to_flat()
    assert flat["moe.experts"] == 3
    assert flat["ssm.momentum"] == 0.95
    assert (flat["pam.alpha"], flat["pam.beta"]) == (5.0, 1.0)
    assert (flat["train.epochs"], flat["train.selection_epochs"]) == (80, 40)
    assert (flat["train.batch_size"], flat["train.lr"], flat["train.momentum"]) == (128, 0.01, 0.9)
    assert flat["train.weight_decay"] == 0.005
    assert flat["data.aux_ratio"] == 0.1 and flat["data.image_size"] == 224
    assert defaults.make_config("caers").data.aux_ratio == 0.2
    # The synthetic aux set is 23x its target, as AffectNet is RAF-DB: the paper's 10% is 2.3x the target.
    assert defaults.make_config("synthetic").data.aux_ratio == 0.1


def test_set_parses_to_the_key_type_and_layers_apply_in_order():
    sets = defaults.parse_sets(["pam.alpha=3", "modules.moe=false", "moe.experts=5", "model.pretrained=none"])
    assert sets == {"pam.alpha": 3.0, "modules.moe": False, "moe.experts": 5, "model.pretrained": None}
    cfg = defaults.make_config("synthetic", {"pam.alpha": 2}, sets)
    assert cfg.pam.alpha == 3.0 and cfg.experts == 1  # MoE off means one head


@pytest.mark.parametrize(
    "item, needle",
    [
        ("pam.alpah=3", "did you mean pam.alpha?"),
        ("pam.alpha=0", "pam.alpha"),
        ("moe.experts=0", "[1, 64]"),
        ("data.aux_ratio=1.5", "[0.0, 1.0]"),
        ("model.backbone=resnet", "did you mean resnet18?"),
        ("modules.ssm=maybe", "true or false"),
        ("train.epochs=2.5", "train.epochs"),
        ("pam.alpha=nan", "not finite"),
        ("pam.alpha", "--set KEY=VALUE"),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_values(item, needle):
    with pytest.raises(ConfigError) as info:
        defaults.parse_set(item)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_cross_key_rules():
    with pytest.raises(ConfigError, match="modules.pam=true needs modules.ssm=true"):
        defaults.make_config("synthetic", {"modules.ssm": False})
    with pytest.raises(ConfigError, match="selection_epochs"):
        defaults.make_config("synthetic", {"train.epochs": 4, "train.selection_epochs": 5})


def test_flat_round_trip():
    cfg = defaults.make_config("caers", {"pam.beta": 3, "train.seed": 7})
    assert config.from_flat(cfg.to_flat()) == cfg


def test_a_shorter_run_shortens_the_default_selection_stage_and_says_so():
    assert defaults.make_config("rafdb", {"train.epochs": 20}).train.selection_epochs == 10
    assert defaults.make_config("rafdb", {"train.epochs": 200}).train.selection_epochs == 40  # the paper's T_S
    assert defaults.make_config("synthetic", {"train.epochs": 1}).train.selection_epochs == 0
    # A value that any layer sets is kept as given (and checked).
    assert defaults.make_config("rafdb", {"train.selection_epochs": 15}, {"train.epochs": 20}).train.selection_epochs == 15
    assert defaults.selection_note("rafdb", {"train.epochs": 20}).startswith("train.epochs=20: train.selection_epochs")
    assert defaults.selection_note("rafdb", {"train.epochs": 100}) is None
    assert defaults.selection_note("rafdb", {"train.epochs": 20, "train.selection_epochs": 5}) is None
