"""Face-identity pretraining on synthetic faces: the synthetic benchmark's MS-Celeb-1M.

The paper starts from a ResNet-18 pretrained to recognise *who* a face is (MS-Celeb-1M), not
which expression it shows. This module does the same on the synthetic renderer: people drawn
apart from the benchmark's (``synthetic.identity_faces``), each seen with varied expressions, and
a backbone trained to name the person. The backbone's weights (no identity classifier) are saved
as ``{"state_dict": ..., "pretext": {...}}``, a file the ordinary ``model.pretrained`` loader
reads.

``model.pretrained=synthetic-faces`` (the synthetic target's default) names this backbone. It is
built on first use into the cache, like the synthetic benchmark: under a file lock, written
atomically, keyed on everything that changes it (the recipe, the renderer's and this module's
versions), and deterministic for a seed on the CPU with the same thread count.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sspa_ray.config import SYNTHETIC_PRETRAINED, Config
from sspa_ray.data import synthetic
from sspa_ray.data._progress import Progress
from sspa_ray.data.augment import augment, normalize
from sspa_ray.data.cache import cache_dir, locked
from sspa_ray.engine.checkpoint import atomic_write_bytes
from sspa_ray.errors import ConfigError

VERSION = 1  # bump when the training below or the faces of synthetic.identity_faces change the weights
# The backbones the synthetic identity pretraining supports: those whose builder loads
# model.pretrained into the module it returns (ARM loads a trunk). config.BACKBONES lists them all.
PRETRAINABLE_BACKBONES = ("small", "resnet18")


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the pretrained weights; its hash is the cache key."""

    backbone: str = "small"
    image_size: int = 32
    seed: int = 0
    identities: int = 200       # people in the pretext task
    per_identity: int = 24      # images per person, `held_back` of them kept for the accuracy
    held_back: int = 4
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 0.0005

    def key(self) -> str:
        text = json.dumps({**asdict(self), "version": VERSION, "renderer": synthetic.VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def recipe_for(cfg: Config) -> Recipe:
    """The recipe of a run's built-in backbone: its backbone, its image size, the benchmark's seed."""
    if cfg.model.backbone not in PRETRAINABLE_BACKBONES:
        raise ConfigError(
            f"model.pretrained={SYNTHETIC_PRETRAINED} supports model.backbone {' or '.join(PRETRAINABLE_BACKBONES)}, not "
            f"{cfg.model.backbone}; give a checkpoint path or set model.pretrained=none"
        )
    return Recipe(backbone=cfg.model.backbone, image_size=cfg.data.image_size, seed=cfg.data.synthetic_seed)


def cached_path(recipe: Recipe) -> Path:
    return cache_dir() / "pretrained" / f"{recipe.backbone}-{recipe.image_size}px-{recipe.key()}.pt"


def ensure(recipe: Recipe, *, path: Path | None = None, progress: bool = True) -> Path:
    """The backbone of `recipe` at `path` (by default its place in the cache), trained on first use under
    a lock."""
    final = path or cached_path(recipe)
    if final.is_file():
        return final
    with locked(final.with_suffix(".lock")):
        if not final.is_file():  # another process may have built it while we waited
            pretrain(recipe, final, progress=progress)
    return final


def resolved(cfg: Config, *, progress: bool = True):
    """`cfg`, or a copy whose model.pretrained is the built-in backbone's cached file."""
    if cfg.model.pretrained != SYNTHETIC_PRETRAINED:
        return cfg
    out = cfg.copy()
    out.set("model.pretrained", str(ensure(recipe_for(cfg), progress=progress)))
    return out


def pretrain(recipe: Recipe, out: Path, *, progress: bool = True) -> dict:
    """Train the identity task of `recipe`, write the backbone to `out` atomically; return the pretext figures."""
    from sspa_ray.defaults import make_config
    from sspa_ray.model import build_backbone

    started = time.perf_counter()
    images, identity = synthetic.identity_faces(recipe.seed, recipe.identities, recipe.per_identity, recipe.image_size)
    held = (np.arange(len(identity)) % recipe.per_identity) >= recipe.per_identity - recipe.held_back
    train_x, train_y = torch.from_numpy(images[~held]), torch.from_numpy(identity[~held])
    test_x, test_y = torch.from_numpy(images[held]), torch.from_numpy(identity[held])
    # A from-scratch backbone config at this size; model.pretrained=none so nothing loads.
    cfg = make_config("synthetic", {"model.backbone": recipe.backbone, "data.image_size": recipe.image_size,
                                    "model.pretrained": None})
    channels_last = recipe.backbone == "small"  # small's max-pool is ~3x faster so on a CPU
    steps = len(train_y) // recipe.batch_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        backbone, dim = build_backbone(cfg)
        head = torch.nn.Linear(dim, recipe.identities)
        net = torch.nn.Sequential(backbone, head)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, recipe.epochs * steps))
        generator = torch.Generator().manual_seed(recipe.seed)
        padding = recipe.image_size // 8
        label = f"pretraining {recipe.backbone} on {recipe.identities} synthetic face identities ({recipe.epochs} epochs)"
        with Progress(recipe.epochs * steps * recipe.batch_size, label, progress) as bar:
            for _ in range(recipe.epochs):
                net.train()
                order = torch.randperm(len(train_y), generator=generator)
                for step in range(steps):
                    ids = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
                    x = augment(train_x[ids], generator, padding, channels_last=channels_last)
                    loss = F.cross_entropy(net(x), train_y[ids])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    bar.update(len(ids))
        accuracy = _accuracy(net, test_x, test_y, channels_last)
    pretext = {
        "task": "identity", "identities": recipe.identities, "train_images": int(len(train_y)),
        "held_back_images": int(len(test_y)), "held_back_accuracy": accuracy, "recipe": asdict(recipe),
    }
    buffer = io.BytesIO()
    state = {k: v.contiguous() for k, v in backbone.state_dict().items()}
    torch.save({"state_dict": state, "pretext": pretext}, buffer)  # no timing inside: same seed, same bytes
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(out), buffer.getvalue())
    return {**pretext, "seconds": round(time.perf_counter() - started, 1)}


@torch.no_grad()
def _accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, channels_last: bool) -> float:
    net.eval()
    hits = sum(int((net(normalize(x[a : a + 256], channels_last=channels_last)).argmax(1) == y[a : a + 256]).sum())
               for a in range(0, len(y), 256))
    return hits / max(1, len(y))

