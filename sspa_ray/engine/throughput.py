"""A short timed burst of the real engine, for the time estimate of ``--dry-run``.

Runs :func:`sspa_ray.engine.fit` for two epochs (one SS, one PA) on random images of the
configuration's size, with its backbone and precision and every module on (SSPA-JT, the slowest
step), on this machine's device, and returns the images per second of the PA epoch as the engine
itself measures it (evaluation excluded). On a CPU, images above CPU_FULL_BATCH_SIZE px use a batch
of at most CPU_BURST_BATCH, so that the burst takes seconds, not minutes.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import numpy as np

from sspa_ray.config import MODULES, Config, make_config
from sspa_ray.data import JointData, Split
from sspa_ray.engine.images import pick_device
from sspa_ray.engine.loop import fit
from sspa_ray.labels import NUM_CLASSES

CPU_BURST_BATCH = 16
CPU_FULL_BATCH_SIZE = 64
BURST_BATCHES = 6   # per split and epoch
SSPA_JT = {"method.name": "sspa_jt", **{key: True for key in MODULES}}


@dataclass(frozen=True)
class Throughput:
    img_per_s: float
    how: str            # one line: how the figure was obtained


def _split(rng: np.random.Generator, n: int, size: int, name: str) -> Split:
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return Split(images, rng.integers(0, NUM_CLASSES, n).astype(np.int64), [f"{name}/{i}.png" for i in range(n)])


def measure(cfg: Config) -> Throughput:
    """Images per second of `cfg`'s training steps on this machine (see the module docstring)."""
    device = pick_device(cfg)
    size = cfg.data.image_size
    small = device.type != "cpu" or size <= CPU_FULL_BATCH_SIZE
    batch = cfg.train.batch_size if small else min(cfg.train.batch_size, CPU_BURST_BATCH)
    burst = make_config(cfg.data.target, cfg.to_flat(), SSPA_JT, {
        "train.epochs": 2, "train.selection_epochs": 1, "train.batch_size": batch, "model.pretrained": None,
    })
    rng = np.random.default_rng(0)
    aux = BURST_BATCHES * batch
    data = JointData(_split(rng, BURST_BATCHES * batch, size, "target"), _split(rng, aux, size, "aux"),
                     _split(rng, batch, size, "test"), None)
    with tempfile.TemporaryDirectory(prefix="sspa-burst-") as run_dir:
        metrics = fit(burst, run_dir, data=data, log=lambda _line: None)
    img_per_s = float(metrics["history"][-1]["img_per_s"])
    how = (f"measured: a timed burst of the engine, SSPA-JT with {cfg.model.backbone} at {size} px, "
           f"1 SS + 1 PA epoch of {2 * BURST_BATCHES} batches of {batch} on {device.type}")
    return Throughput(img_per_s, how)
