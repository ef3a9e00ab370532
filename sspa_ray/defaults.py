"""A config built from its layers: defaults < the target's defaults (TARGET_DEFAULTS) < YAML
``fixed`` < search-space / ablation row values < ``--set`` (parse_sets), the keys whose default
follows other keys (train.selection_epochs, data.crop_padding), and the lines that say what a short
schedule does to them (selection_note, horizon_warning). config.py holds the keys themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sspa_ray.config import (
    CROP_PADDING,
    FIELDS,
    KEYS,
    SELECTION_EPOCHS,
    SYNTHETIC_PRETRAINED,
    Config,
    allowed,
    coerce,
)
from sspa_ray.errors import ConfigError

# Per-target defaults. Real targets follow the paper (section 4.1.3); the synthetic benchmark
# is sized so that the nine-row module ablation finishes in a few minutes on 2 CPU cores.
TARGET_DEFAULTS: dict[str, dict[str, Any]] = {
    "rafdb": {"data.aux_ratio": 0.1, "data.image_size": 224, "model.backbone": "resnet18"},
    "caers": {"data.aux_ratio": 0.2, "data.image_size": 224, "model.backbone": "resnet18"},
    "synthetic": {
        # RAF-DB's share: the synthetic aux set is 23x its target, as AffectNet is RAF-DB's, so
        # 10% of it is 2.3x the target, as in the paper.
        "data.aux_ratio": 0.1,
        "data.image_size": 32,
        "model.backbone": "small",
        "train.epochs": 12,
        "train.selection_epochs": 6,
        "train.batch_size": 64,
        "train.lr": 0.05,
        "train.weight_decay": 0.0005,
        # The paper's threshold horizon on a short schedule: 0.7^6 = 0.12 of the 1/C start is left
        # after the 6 selection epochs, as 0.95^40 = 0.13 after the paper's 40.
        "ssm.momentum": 0.7,
        # Identity-pretrained on synthetic faces (engine/pretrain.py), as the paper's MS-Celeb-1M start.
        "model.pretrained": SYNTHETIC_PRETRAINED,
        # The small CNN's max-pool is ~3x faster in channels_last on a CPU (benchmarks/engine_step).
        "train.channels_last": True,
    },
}


def parse_set(item: str) -> tuple[str, Any]:
    """Parse one ``--set KEY=VALUE`` argument."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r} is malformed: write --set KEY=VALUE, e.g. --set pam.alpha=3")
    key, value = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {item!r} is malformed: the key is empty; write --set KEY=VALUE")
    return key, coerce(key, value)


def parse_sets(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    return dict(parse_set(item) for item in items)


def make_config(target: str | None = None, *layers: Mapping[str, Any]) -> Config:
    """Build a validated config: defaults, then the target's defaults, then each layer in order.

    The target is taken from the last layer that sets ``data.target`` if `target` is None. When
    no layer sets ``train.selection_epochs``, it is at most half of ``train.epochs`` (the paper's
    40 of 80), so that a shorter run (``--set train.epochs=4``) needs no second key. A
    ``data.crop_padding`` of -1 becomes the pixels it stands for (see crop_padding).
    """
    for layer in layers:
        if "data.target" in layer and layer["data.target"] is not None:
            target = coerce("data.target", layer["data.target"])
    target = coerce("data.target", target or "synthetic")
    cfg = Config()
    cfg.set("data.target", target)
    for key, value in TARGET_DEFAULTS[target].items():
        cfg.set(key, value)
    for layer in layers:
        for key, value in layer.items():
            cfg.set(key, value)
    if not any(SELECTION_EPOCHS in layer for layer in layers):
        cfg.set(SELECTION_EPOCHS, min(cfg.train.selection_epochs, cfg.train.epochs // 2))
    # Resolved once, after every layer (a later one may set data.image_size), so that trial
    # identities, checkpoints, results.parquet and the report's expected trials all hold the pixels.
    cfg.set(CROP_PADDING, crop_padding(cfg))
    return cfg.validate()


def crop_padding(cfg: Config | Mapping[str, Any]) -> int:
    """Pixels of padding of the random crop: ``data.crop_padding``, or image_size // 8 for -1.

    `cfg` is a Config or a flat config that holds both keys (report/aggregate.py's read_results
    passes results.parquet's rows).
    """
    pad, size = cast(int, cfg.get(CROP_PADDING)), cast(int, cfg.get("data.image_size"))
    return size // 8 if pad < 0 else pad


def selection_note(target: str | None, sets: Mapping[str, Any]) -> str | None:
    """The one line that says `sets` shortened the SS stage (see make_config), or None."""
    if SELECTION_EPOCHS in sets or "train.epochs" not in sets:
        return None
    default = make_config(target, {k: v for k, v in sets.items() if k == "data.target"}).train.selection_epochs
    used = make_config(target, sets).train.selection_epochs
    if used == default:
        return None
    return (f"train.epochs={sets['train.epochs']}: train.selection_epochs defaults to half of it, {used} "
            f"(not {default}); set train.selection_epochs to choose")


# The share of the 1/C threshold start that the paper's schedule leaves: eta^T_S = 0.95^40 = 0.13.
PAPER_HORIZON = 0.95**40
# Above this share the thresholds stay near 1/C, so the selection is looser than the paper's. How
# much looser depends on the model's confidence, which the warning cannot know before training.
HORIZON_LIMIT = 0.5


def horizon_warning(cfg: Config) -> str | None:
    """One warning line when eta^T_S leaves more than HORIZON_LIMIT of the 1/C start, else None.

    Arithmetic on the config alone, so the plan prints it before Ray starts without importing the
    engine, and SSPA-JT prints it each SS epoch."""
    eta, epochs = cfg.ssm.momentum, cfg.train.selection_epochs
    if not cfg.modules.ssm or epochs == 0 or eta**epochs <= HORIZON_LIMIT:
        return None
    restoring = PAPER_HORIZON ** (1 / epochs)
    return (
        f"warning: ssm.momentum={eta:g} over train.selection_epochs={epochs} leaves {eta**epochs:.2f} of the "
        f"thresholds' 1/C start (the paper: 0.95^40 = {PAPER_HORIZON:.2f}): the thresholds stay near 1/C, so SSM "
        f"selects less strictly than in the paper; ssm.momentum={restoring:.2f} restores the paper's horizon"
    )


def describe_keys(target: str = "synthetic") -> str:
    """The key vocabulary as a table with `target`'s defaults, for `sspa-ray keys` and the README."""
    defaults = make_config(target).to_flat()
    rows = [f"{'key':28} {'default (' + target + ')':>20}  allowed; meaning"]
    for key in KEYS:
        rows.append(f"{key:28} {str(defaults[key]):>20}  {allowed(key)}; {FIELDS[key].metadata['help']}")
    return "\n".join(rows)
