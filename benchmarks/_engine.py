"""Shared set-up of the engine benchmarks: random data of a run's shape, Trainers on it, and
interleaved timing of the Trainer's own epoch code (``plan`` then ``train_epoch``), so the
figures measure the code users run, not a re-implementation of it.

Imports only the engine, model, data and config layers (no Ray, no Optuna), so it runs on a GPU
machine that has just torch, torchvision, scipy and pandas.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sspa_ray.data import JointData, Split
from sspa_ray.data.augment import augment
from sspa_ray.data.synthetic import split_sizes
from sspa_ray.defaults import make_config
from sspa_ray.engine.loop import Trainer
from sspa_ray.labels import NUM_CLASSES
from sspa_ray.model import build_model

# Share of the aux set that the PA stage treats as clean: about what the SS stage keeps on the
# synthetic benchmark. It only moves host-side planning; every step mixes the whole batch.
AUX_CLEAN_SHARE = 0.6
SSPA = {"modules.ssm": True, "modules.moe": True, "modules.pam": True}
MODULES_OFF = {"modules.ssm": False, "modules.moe": False, "modules.pam": False}


def _split(rng: np.random.Generator, n: int, size: int, name: str) -> Split:
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, n).astype(np.int64)
    return Split(images, labels, [f"{name}/{i:06d}.png" for i in range(n)])


def random_data(size: int, n_target: int, n_aux: int, n_test: int = 64, seed: int = 0) -> JointData:
    """Random uint8 images and labels; only shapes matter to the speed of a step."""
    rng = np.random.default_rng(seed)
    return JointData(
        target_train=_split(rng, n_target, size, "target"),
        aux_train=_split(rng, n_aux, size, "aux"),
        test=_split(rng, n_test, size, "test"),
        aux_true_labels=None,
    )


def synthetic_sized_data(size: int = 32) -> JointData:
    """Random images in the sizes of a default synthetic run at scale 1: 1000 target train images
    and the default 10% of the 23,000 aux ones."""
    sizes = split_sizes(1.0)
    n_aux = round(sizes["affectnet/train"] * make_config("synthetic").data.aux_ratio)
    return random_data(size, sizes["rafdb/train"], n_aux, sizes["rafdb/test"])


def make_trainer(settings: dict, data: JointData, run_dir) -> Trainer:
    """A Trainer on `data` with the synthetic target's defaults overridden by `settings`."""
    size = data.target_train.images.shape[1]
    # Weights do not change the step time: skip building the pretrained backbone.
    cfg = make_config("synthetic", {"data.image_size": size, "model.pretrained": None}, settings)
    return Trainer(cfg, run_dir, data=data, log=lambda _line: None)


def fixed_clean_mask(trainer: Trainer, seed: int = 0) -> np.ndarray:
    """Targets clean, AUX_CLEAN_SHARE of the aux set clean; also installed in the trainer's SSM."""
    rng = np.random.default_rng(seed)
    clean = rng.random(trainer.num_samples) < AUX_CLEAN_SHARE
    clean[: trainer.method.n_target] = True
    trainer.method.selector.clean = torch.from_numpy(clean).to(trainer.device)
    return clean


class EngineEpoch:
    """One epoch of a stage through the engine's code: the host-side plan, then every step.

    SS epochs end with the SSM's re-selection, as in ``Trainer.run``; the clean mask that plans
    the next epoch stays fixed, so every repetition does the same work.
    """

    def __init__(self, trainer: Trainer, stage: str):
        self.trainer, self.stage = trainer, stage
        self.model = trainer.training_model()
        # Without the SSM every sample stays clean, as in a real run.
        self.clean = fixed_clean_mask(trainer) if trainer.cfg.modules.ssm else trainer.method.clean
        # The plan's stage follows the epoch: the first epoch is SS, the first after the SS stage PA.
        trainer.epoch = 0 if stage == "SS" else trainer.cfg.train.selection_epochs
        self.steps, self.batch = trainer.method.steps(trainer.epoch), trainer.cfg.train.batch_size

    def __call__(self) -> float:
        t = self.trainer
        t.method.clean = self.clean
        loss = t.train_epoch(self.model, t.plan(), self.stage)
        t.method.end_epoch(self.stage)
        return loss


class PlainEpoch:
    """The reference: a hand-written cross-entropy epoch, the loop one writes without SSPA-JT.

    Same backbone, data, batch, gather, augmentation, precision, memory format, SGD and cosine
    schedule as `trainer` (built with the modules off); a plain linear head and a mean CE loss.
    """

    def __init__(self, trainer: Trainer):
        cfg = trainer.cfg
        classifier = build_model(cfg)
        self.model = nn.Sequential(classifier.backbone, nn.Linear(classifier.head.ffn.in_features, NUM_CLASSES))
        self.model = self.model.to(trainer.device)
        if trainer.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        t = cfg.train
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        steps = trainer.method.steps(0)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=t.epochs * steps)
        self.trainer = trainer
        self.steps, self.batch = steps, t.batch_size

    def __call__(self) -> float:
        t = self.trainer
        order = np.random.default_rng([t.cfg.train.seed, 0]).permutation(t.num_samples)
        order = order[: self.steps * self.batch].reshape(self.steps, self.batch)
        ids = torch.from_numpy(order).to(t.device)
        generator = torch.Generator(device=t.device)
        generator.manual_seed(t.cfg.train.seed)
        total = torch.zeros((), device=t.device)
        self.model.train()
        for step in range(self.steps):
            x = augment(t.train_images.take(order[step], ids[step]), generator, t.padding, channels_last=t.channels_last)
            with t.autocast():
                logits = self.model(x)
            loss = F.cross_entropy(logits.float(), t.labels_device[ids[step]])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            total += loss.detach()
        return (total / self.steps).item()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(runs: dict[str, Callable[[], float]], rounds: int, device: torch.device, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each run: `warmup` untimed calls each, then `rounds` rounds that call
    every run once, in an order rotated every round (so machine-load drift hits all alike)."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    names = list(runs)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            _sync(device)
            start = time.perf_counter()
            runs[name]()
            _sync(device)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def median(values: list[float]) -> float:
    return statistics.median(values)
