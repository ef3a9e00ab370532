"""The one vocabulary of dotted config keys.

A key such as ``pam.alpha`` means the same thing in YAML files, in ``--set KEY=VALUE``, in result
tables and in code. Unknown keys, values of the wrong type and values out of range are errors that
name the key, what is allowed and, for a near miss, the key that was meant.

Precedence when building a config (make_config, in defaults.py): dataclass defaults < target
defaults < YAML ``fixed`` < search-space / ablation row values < ``--set``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sspa_ray.errors import ConfigError
from sspa_ray.suggest import CHOICE_CUTOFF, did_you_mean

TARGETS = ("synthetic", "rafdb", "caers")
AUX_DATASETS = ("affectnet", "none")
# The backbones (model.backbone) and joint-training methods (method.name): the only place their names are
# written, as config sits above model/ and engine/. Each is one file there, registered under its name; the
# registries (registry.py) refuse a name missing here and, on import, a name here with no file.
BACKBONES = ("small", "resnet18", "arm")
METHODS = ("sspa_jt", "scn", "dcjt")
# method.recipe: the optimiser recipe. `shared` gives every method the same SGD + cosine schedule
# (train.*), the controlled comparison; `own` uses the method's published recipe where it has one.
RECIPES = ("shared", "own")
# The model.pretrained value naming the backbone identity-pretrained on synthetic faces (engine/pretrain.py).
SYNTHETIC_PRETRAINED = "synthetic-faces"


def _spec(*, lo=None, hi=None, lo_open=False, hi_open=False, choices=None, help=""):
    return {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "choices": choices, "help": help}


def _f(default, **spec):
    return field(default=default, metadata=_spec(**spec))


@dataclass
class ModulesConfig:
    ssm: bool = _f(True, help="Sample Selection Module (SS stage filters the aux set)")
    fix_target: bool = _f(True, help="target samples are always clean")
    moe: bool = _f(True, help="Mixture-of-Experts head; off = one linear head")
    pam: bool = _f(True, help="Paired Augmentation Module in the PA stage")


# SSPA-JT's module toggles, defined once: key -> (its short name in trial names, the paper's title
# in tables). tests/test_methods.py checks that they are ModulesConfig's fields.
MODULES: dict[str, tuple[str, str]] = {
    "modules.ssm": ("ssm", "SSM"),
    "modules.fix_target": ("fix", "D_T fixed"),
    "modules.moe": ("moe", "MoE"),
    "modules.pam": ("pam", "PAM"),
}


@dataclass
class MethodConfig:
    name: str = _f("sspa_jt", choices=METHODS,
                   help="joint-training method; modules.* are SSPA-JT's options, scn.* SCN's, dcjt.* DCJT's")
    recipe: str = _f("shared", choices=RECIPES,
                     help="optimiser: shared = train.* SGD + cosine for every method; own = the method's published recipe")


@dataclass
class SCNConfig:
    rank_margin: float = _f(0.15, lo=0.0, hi=1.0, help="delta_1 of the rank regularisation")
    high_share: float = _f(0.7, lo=0.0, lo_open=True, hi=1.0, hi_open=True,
                           help="beta: share of a batch in the high-importance group")
    relabel_margin: float = _f(0.2, lo=0.0, hi=1.0, help="delta_2: relabel when max prob - given-label prob exceeds it")
    relabel_epoch: int = _f(-1, lo=-1, hi=10000,
                            help="first (1-based) epoch that relabels; -1 = the reference's 10 of 70, scaled to train.epochs")
    relabel_scope: str = _f("batch", choices=("batch", "low"),
                            help="who may be relabelled: batch = any sample (the code), low = the low-importance group (the paper)")
    gamma: float | None = _f(None, lo=0.0, lo_open=True, hi=1.0, hi_open=True,
                             help="none = CE + rank loss (the code); a value = gamma*rank + (1-gamma)*CE (the paper)")


@dataclass
class DCJTConfig:
    va_weight: float = _f(-1.0, lo=-1.0, hi=1000.0,
                          help="lambda: weight of the valence/arousal MSE beside the CE; -1 = 15 (its config) with method.recipe=own, 0.1 with the shared SGD")
    aux_period: int = _f(-1, lo=-1, hi=10000, help="a pass over the aux set every N epochs; -1 = 10 of 120, scaled")
    aux_start: int = _f(-1, lo=-1, hi=10000, help="no aux pass before this 0-based epoch; -1 = 30 of 120, scaled")
    aux_labels: str | None = _f(None, help="DCJT's relabelled aux list ('path label valence arousal'); none = approximate")
    annotator_epochs: int = _f(-1, lo=-1, hi=10000,
                               help="epochs of the annotator that predicts the target's valence/arousal (and approx. labels); -1 = train.epochs")
    relabel_margin: float = _f(0.2, lo=0.0, hi=1.0,
                               help="approx. labels: an aux image takes the annotator's class when its probability beats the given label's by this")


@dataclass
class MoEConfig:
    experts: int = _f(3, lo=1, hi=64, help="number of experts k")


@dataclass
class SSMConfig:
    momentum: float = _f(0.95, lo=0.0, hi=1.0, hi_open=True, help="EMA momentum eta of the thresholds")


@dataclass
class PAMConfig:
    alpha: float = _f(5.0, lo=0.0, lo_open=True, hi=1000.0, help="Beta(alpha, beta) of the Mixup weight")
    beta: float = _f(1.0, lo=0.0, lo_open=True, hi=1000.0, help="Beta(alpha, beta) of the Mixup weight")


@dataclass
class DataConfig:
    target: str = _f("synthetic", choices=TARGETS, help="target dataset D_T")
    aux: str = _f("affectnet", choices=AUX_DATASETS, help="auxiliary dataset D_A")
    aux_ratio: float = _f(1.0, lo=0.0, hi=1.0, help="seeded class-stratified share of the aux train split")
    image_size: int = _f(224, lo=16, hi=1024, help="side of the cached square images")
    crop_padding: int = _f(-1, lo=-1, hi=256, help="random-crop padding in pixels; -1 = image_size // 8")
    root: str | None = _f(None, help="folder holding rafdb/, affectnet/, caers/ (default $SSPA_DATA_ROOT)")
    synthetic_scale: float = _f(1.0, lo=0.01, hi=100.0, help="size multiplier of the synthetic benchmark")
    synthetic_seed: int = _f(0, lo=0, hi=2**31 - 1, help="seed of the synthetic benchmark")

    @property
    def is_synthetic(self) -> bool:
        """Whether D_T is the built-in synthetic benchmark: rendered and cached here, no data.root."""
        return self.target == "synthetic"

    @property
    def uses_aux(self) -> bool:
        """Whether training draws on an aux set: one is named and its share is above zero."""
        return self.aux != "none" and self.aux_ratio > 0


@dataclass
class ModelConfig:
    backbone: str = _f("resnet18", choices=BACKBONES, help="feature extractor")
    pretrained: str | None = _f(None, help=f"backbone checkpoint path (MS-Celeb / ImageNet style), {SYNTHETIC_PRETRAINED}, or none")
    arm_alpha: float = _f(1.0, lo=0.0, hi=100.0, help="weight of the batch mean in ARM's affinity term")


@dataclass
class TrainConfig:
    epochs: int = _f(80, lo=1, hi=10000, help="total epochs T_max")
    selection_epochs: int = _f(40, lo=0, hi=10000, help="epochs of the SS stage T_S; unless set, at most train.epochs // 2")
    batch_size: int = _f(128, lo=2, hi=65536, help="minibatch size")
    lr: float = _f(0.01, lo=0.0, lo_open=True, hi=10.0, help="initial SGD learning rate")
    momentum: float = _f(0.9, lo=0.0, hi=1.0, hi_open=True, help="SGD momentum")
    weight_decay: float = _f(0.005, lo=0.0, hi=1.0, help="SGD weight decay")
    seed: int = _f(0, lo=0, hi=2**31 - 1, help="seed of every random choice of a run")
    device: str = _f("auto", choices=("auto", "cpu", "cuda"), help="training device")
    precision: str = _f("fp32", choices=("fp32", "bf16", "fp16"), help="autocast precision on CUDA; bf16 recommended (fp16's scaler syncs the host every step)")
    channels_last: bool = _f(False, help="channels_last memory format (CUDA and CPU)")
    compile: bool = _f(False, help="torch.compile the model")
    data_on_device: bool = _f(True, help="keep the uint8 dataset on the training device when it fits")
    eval_batch_size: int = _f(256, lo=1, hi=65536, help="batch size of evaluation")
    num_threads: int = _f(0, lo=0, hi=1024, help="torch CPU threads; 0 = torch's default")
    gpu_share: float = _f(1.0, lo=0.0, lo_open=True, hi=1.0,
                          help="share of the GPU's memory this run plans for (set from --gpus-per-trial)")


@dataclass
class Config:
    method: MethodConfig = field(default_factory=MethodConfig)
    scn: SCNConfig = field(default_factory=SCNConfig)
    dcjt: DCJTConfig = field(default_factory=DCJTConfig)
    modules: ModulesConfig = field(default_factory=ModulesConfig)
    moe: MoEConfig = field(default_factory=MoEConfig)
    ssm: SSMConfig = field(default_factory=SSMConfig)
    pam: PAMConfig = field(default_factory=PAMConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # ---- dotted access -------------------------------------------------------------------
    def get(self, key: str) -> Any:
        section, name = _split(key)
        return getattr(getattr(self, section), name)

    def set(self, key: str, value: Any) -> None:
        section, name = _split(key)
        setattr(getattr(self, section), name, coerce(key, value))

    def to_flat(self) -> dict[str, Any]:
        return {key: self.get(key) for key in KEYS}

    def copy(self) -> Config:
        return from_flat(self.to_flat())

    @property
    def experts(self) -> int:
        """Effective number of experts: MoE off means one linear head."""
        return self.moe.experts if self.modules.moe else 1

    def validate(self) -> Config:
        """Checks that involve more than one key. Returns self."""
        if self.method.name == "sspa_jt" and self.modules.pam and not self.modules.ssm:
            raise ConfigError(
                "modules.pam=true needs modules.ssm=true: PAM pairs clean with noisy samples and "
                "only SSM decides which are noisy; set modules.ssm=true or modules.pam=false"
            )
        if self.train.selection_epochs > self.train.epochs:
            raise ConfigError(
                f"train.selection_epochs={self.train.selection_epochs} exceeds train.epochs="
                f"{self.train.epochs}; choose train.selection_epochs <= train.epochs"
            )
        return self


def _fields_of(section_cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(section_cls)}


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Config)}  # type: ignore[misc]
FIELDS: dict[str, dataclasses.Field] = {
    f"{section}.{name}": fld for section, cls in SECTIONS.items() for name, fld in _fields_of(cls).items()
}
KEYS: tuple[str, ...] = tuple(FIELDS)
SELECTION_EPOCHS = "train.selection_epochs"
CROP_PADDING = "data.crop_padding"
# Keys that change only how a run executes (where, how fast, where its data lies), never what it
# computes: a checkpoint may be resumed with other values of these, every other key must match.
EXECUTION_KEYS = frozenset(
    {"train.device", "train.num_threads", "train.eval_batch_size", "train.data_on_device", "train.gpu_share",
     "data.root"}
)


def _split(key: str) -> tuple[str, str]:
    check_key(key)
    section, name = key.split(".", 1)
    return section, name


def check_key(key: str) -> None:
    if key in FIELDS:
        return
    hint = did_you_mean(key, KEYS, otherwise="see `sspa-ray keys` for the list")
    raise ConfigError(f"unknown config key '{key}': {hint}")


def _type_name(fld: dataclasses.Field) -> str:
    return str(fld.type).replace(" | None", "")


def allowed(key: str) -> str:
    """A human description of the values `key` accepts."""
    fld = FIELDS[key]
    meta = fld.metadata
    t = _type_name(fld)
    if meta["choices"]:
        return "one of " + ", ".join(meta["choices"])
    if t == "bool":
        return "true or false"
    if meta["lo"] is not None or meta["hi"] is not None:
        lb = "(" if meta["lo_open"] else "["
        rb = ")" if meta["hi_open"] else "]"
        ranged = f"a{'n' if t == 'int' else ''} {t} in {lb}{meta['lo']}, {meta['hi']}{rb}"
        return ranged + (", or none" if "None" in str(fld.type) else "")
    if "None" in str(fld.type):
        return "a path, or none"
    return f"a {t}"


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(key: str, value: Any) -> Any:
    """Parse `value` (a string from --set, or a YAML scalar) to the type of `key` and range-check it."""
    check_key(key)
    fld = FIELDS[key]
    meta = fld.metadata
    t = _type_name(fld)
    optional = "None" in str(fld.type)

    def bad(why: str = "") -> ConfigError:
        return ConfigError(f"{key}={value!r} is invalid{why}: expected {allowed(key)}")

    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in {"none", "null", ""})):
        return None
    out: Any
    if t == "bool":
        if isinstance(value, bool):
            out = value
        elif isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            out = value.strip().lower() in _TRUE
        elif isinstance(value, int) and value in (0, 1):
            out = bool(value)
        else:
            raise bad()
        return out
    if t == "int":
        if isinstance(value, bool):
            raise bad()
        try:
            out = int(value) if not isinstance(value, float) else None
            if isinstance(value, float) and value.is_integer():
                out = int(value)
            if out is None:
                raise ValueError
        except (TypeError, ValueError):
            raise bad() from None
    elif t == "float":
        if isinstance(value, bool):
            raise bad()
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise bad() from None
        if not math.isfinite(out):
            raise bad(" (not finite)")
    else:
        out = str(value).strip() if not isinstance(value, str) else value.strip()
        if not isinstance(value, (str, int, float)):
            raise bad()
    if meta["choices"] and out not in meta["choices"]:
        near = did_you_mean(out, meta["choices"], cutoff=CHOICE_CUTOFF)
        raise ConfigError(f"{key}={value!r} is invalid: expected {allowed(key)}" + (f" ({near})" if near else ""))
    lo, hi = meta["lo"], meta["hi"]
    if lo is not None and (out < lo or (meta["lo_open"] and out == lo)):
        raise bad(" (out of range)")
    if hi is not None and (out > hi or (meta["hi_open"] and out == hi)):
        raise bad(" (out of range)")
    return out


def value_text(value: Any) -> str:
    """A config value as `--set` takes it back: true / false / none, floats in their shortest form
    (0.1, 1e-05, 3), anything else as str. Trial names, progress lines and table cells show it."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def from_flat(flat: Mapping[str, Any]) -> Config:
    cfg = Config()
    for key, value in flat.items():
        cfg.set(key, value)
    return cfg
