"""DCJT's annotator: the target's pseudo valence/arousal and, without DCJT's list, approximate aux labels.

DCJT needs valence and arousal for every sample, and RAF-DB has none: its authors predict them
with a regressor trained on AffectNet. It also trains on AffectNet relabelled to the target's
criteria, a list distributed apart from its code. Without that list we approximate it (README,
method notes): a classifier trained on the target's own labels names each aux image's class under
the target's criteria. One network does both, as the reference's joint head does: the run's
backbone (with its pretrained start) and a linear head of C class logits and two values; a batch
mixes target and aux samples, the target's give the cross-entropy, the aux's the MSE of valence
and arousal, with weight 1: dcjt.va_weight's 15, with the shared SGD learning rate, made the
annotator diverge on the synthetic benchmark (NaN within an epoch at lr 0.05).

It is trained once per recipe and cached, as the built-in pretrained backbone is: keyed on
everything that changes its predictions (the recipe and a hash of the data's paths, labels and
aux values), written atomically, under a file lock, deterministic for a seed on the CPU.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sspa_ray.config import Config
from sspa_ray.data._progress import Progress
from sspa_ray.data.augment import augment, normalize
from sspa_ray.data.cache import cache_dir, locked
from sspa_ray.engine.checkpoint import atomic_write_bytes
from sspa_ray.engine.failures import TrainingDiverged
from sspa_ray.engine.images import pick_device
from sspa_ray.labels import NUM_CLASSES

VERSION = 2  # bump when the training below changes its predictions


@dataclass(frozen=True)
class AnnotatorRecipe:
    backbone: str
    pretrained: str | None
    image_size: int
    seed: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    data: str  # hash of the target's and aux set's paths and labels and the aux values

    def key(self) -> str:
        return hashlib.sha256(json.dumps({**asdict(self), "version": VERSION}, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Annotation:
    target_valence_arousal: np.ndarray  # float32 [N_target, 2]
    aux_probabilities: np.ndarray       # float32 [N_aux, C]: the target-trained head's class probabilities


def _data_hash(data, aux_va: np.ndarray) -> str:
    digest = hashlib.sha256()
    for split in (data.target_train, data.aux_train):
        digest.update("\n".join(split.paths).encode())
        digest.update(np.ascontiguousarray(split.labels).tobytes())
    digest.update(np.ascontiguousarray(aux_va, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def recipe_for(cfg: Config, data, aux_va: np.ndarray, model_cfg: Config) -> AnnotatorRecipe:
    t = cfg.train
    return AnnotatorRecipe(backbone=cfg.model.backbone, pretrained=model_cfg.model.pretrained,
                           image_size=cfg.data.image_size, seed=t.seed,
                           epochs=cfg.dcjt.annotator_epochs if cfg.dcjt.annotator_epochs > 0 else t.epochs,
                           batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay,
                           data=_data_hash(data, aux_va))


def annotate(cfg: Config, data, aux_va: np.ndarray, model_cfg: Config, *, progress: bool = True) -> Annotation:
    """The annotation of `data` (aux valence/arousal `aux_va` [N_aux, 2]) for `cfg`, cached or trained now."""
    recipe = recipe_for(cfg, data, aux_va, model_cfg)
    path = cache_dir() / "dcjt" / f"annotator-{recipe.key()}.npz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path.with_suffix(".lock")):
            if not path.is_file():  # another process may have built it while we waited
                _train(cfg, data, aux_va, model_cfg, recipe, path, progress)
    with np.load(path) as saved:
        return Annotation(saved["target_valence_arousal"], saved["aux_probabilities"])


def _train(cfg: Config, data, aux_va: np.ndarray, model_cfg: Config, recipe: AnnotatorRecipe, path: Path, progress: bool) -> None:
    from sspa_ray.model import build_model

    device = pick_device(cfg)
    channels_last = cfg.train.channels_last
    target, aux = data.target_train, data.aux_train
    images = [target.images, aux.images]
    n_target, n = len(target.labels), len(target.labels) + len(aux.labels)
    labels = torch.from_numpy(np.concatenate([target.labels, np.zeros(len(aux.labels), np.int64)]))
    va = torch.from_numpy(np.concatenate([np.zeros((n_target, 2), np.float32), aux_va.astype(np.float32)]))
    is_target = torch.arange(n) < n_target
    steps = n // recipe.batch_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        net = build_model(model_cfg, head=lambda d, c: torch.nn.Linear(d, c + 2)).to(device)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, recipe.epochs * steps))
        generator = torch.Generator().manual_seed(recipe.seed)  # the data order, on the host
        on_device = torch.Generator(device=device).manual_seed(recipe.seed)  # the augmentation, where it runs
        padding = recipe.image_size // 8
        label = f"DCJT annotator: {recipe.epochs} epochs on the target's labels and the aux set's valence/arousal"
        with Progress(recipe.epochs * steps * recipe.batch_size, label, progress) as bar:
            for _ in range(recipe.epochs):
                net.train()
                order = torch.randperm(n, generator=generator)
                for step in range(steps):
                    ids = order[step * recipe.batch_size : (step + 1) * recipe.batch_size].sort().values
                    x = augment(_gather(images, n_target, ids).to(device), on_device, padding,
                                channels_last=channels_last)
                    out = net(x).float()
                    on_target = is_target[ids].to(device)
                    ce = F.cross_entropy(out[:, :NUM_CLASSES], labels[ids].to(device), reduction="none")
                    mse = (out[:, NUM_CLASSES:] - va[ids].to(device)).pow(2).mean(1)
                    loss = ((ce * on_target).sum() + (mse * ~on_target).sum()) / len(ids)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    bar.update(len(ids))
        target_out = _predict(net, target.images, device, channels_last)
        aux_out = _predict(net, aux.images, device, channels_last)
    if not (np.isfinite(target_out).all() and np.isfinite(aux_out).all()):
        raise TrainingDiverged(recipe.epochs, float("nan"))
    buffer = io.BytesIO()
    np.savez(buffer, target_valence_arousal=target_out[:, NUM_CLASSES:].clip(-1, 1).astype(np.float32),
             aux_probabilities=torch.softmax(torch.from_numpy(aux_out[:, :NUM_CLASSES]), 1).numpy().astype(np.float32))
    atomic_write_bytes(path, buffer.getvalue())


def _gather(images: list[np.ndarray], n_target: int, ids: torch.Tensor) -> torch.Tensor:
    """The batch's uint8 images, target ids first then aux ids (one fancy index per split, not per image)."""
    order = np.sort(ids.numpy())
    split = np.searchsorted(order, n_target)
    return torch.from_numpy(np.concatenate([images[0][order[:split]], images[1][order[split:] - n_target]]))


@torch.no_grad()
def _predict(net: torch.nn.Module, images: np.ndarray, device: torch.device, channels_last: bool) -> np.ndarray:
    net.eval()
    out = [net(normalize(torch.from_numpy(np.array(images[a : a + 256])).to(device), channels_last=channels_last))
           .float().cpu().numpy() for a in range(0, len(images), 256)]
    return np.concatenate(out)
