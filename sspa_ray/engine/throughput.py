"""The training throughput that ``--dry-run`` estimates with: measured once per setting, then cached.

:func:`estimate` returns a :class:`Throughput`, or a :class:`NoEstimate` that says why there is none:

- A figure measured earlier on this device for the same backbone, image size, batch, precision
  (and, on a CPU, threads) is read from ``$SSPA_CACHE_DIR/throughput.json``, so a second dry run
  answers in seconds.
- Otherwise a short burst of the real engine measures it: :func:`sspa_ray.engine.fit` on random
  images of the configuration's size, with its backbone and precision and every module on (SSPA-JT,
  the slowest step). One SS epoch and WARMUP_EPOCHS PA epochs warm up (the allocator, cuDNN's
  autotuning, the CPU caches); the figure is the median img/s of TIMED_EPOCHS PA epochs as the
  engine itself times them (evaluation and checkpoints excluded), and their spread is reported.
  One timed epoch of an unwarmed burst read 169 img/s and, minutes later, 2,080 img/s for the same
  demo (issue 20), whose trials ran at 700-1,650.
- A run for GPUs planned on a machine without one gets no figure: this CPU says nothing about a
  GPU. The estimate then needs ``--throughput``; GPU_FIGURES and any GPU figures in the cache are
  quoted to choose it from.
- On a CPU, images above CPU_BURST_MAX_SIZE px are not timed: the paper's resnet18 and ARM at 224 px
  took 4 minutes of bursts there (issue 20), and such runs go to GPUs.
"""

from __future__ import annotations

import contextlib
import json
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sspa_ray.config import MODULES, Config
from sspa_ray.data import JointData, Split
from sspa_ray.data.cache import cache_dir, locked
from sspa_ray.defaults import make_config
from sspa_ray.engine.checkpoint import atomic_write_text
from sspa_ray.engine.images import pick_device
from sspa_ray.engine.setup import fit
from sspa_ray.labels import NUM_CLASSES

CPU_BURST_MAX_SIZE = 64     # px; the synthetic benchmark's 32 px bursts take a few seconds on one core
BURST_BATCHES = 4           # per epoch and split
WARMUP_EPOCHS = 1           # PA epochs after the SS epoch, not timed
TIMED_EPOCHS = 5            # PA epochs whose median is the figure
CACHE_FILE = "throughput.json"
CPU_DEVICE = "cpu: "        # how a CPU's device name starts in a SpeedKey
SSPA_JT = {"method.name": "sspa_jt", **{key: True for key in MODULES}}


@dataclass(frozen=True)
class SpeedKey:
    """What a throughput figure holds for: the device model and the settings that set the speed."""

    device: str         # the GPU's name, or "cpu: <model>, N threads"
    backbone: str
    image_size: int
    batch_size: int
    precision: str

    def text(self) -> str:
        return f"{self.device} | {self.backbone} {self.image_size}px | batch {self.batch_size} | {self.precision}"


# img/s of SSPA-JT's training steps measured on GPUs, per GPU model and setting (the burst's
# figure, or `python -m benchmarks.gpu_throughput`'s for the same setting). Quoted when a GPU run
# is planned on a machine without a GPU. No GPU has been available to this project yet, so there
# are none; add each as `SpeedKey("NVIDIA H100 80GB HBM3", "resnet18", 224, 128, "bf16"): 15000.0`.
GPU_FIGURES: dict[SpeedKey, float] = {}


@dataclass(frozen=True)
class Throughput:
    img_per_s: float
    how: str            # one line: how the figure was obtained, with its spread


@dataclass(frozen=True)
class NoEstimate:
    reason: str         # one line: why there is no figure and what to give instead


def estimate(cfg: Config, *, gpu_run: bool) -> Throughput | NoEstimate:
    """The img/s of `cfg`'s training steps on this machine's device (see the module docstring);
    `gpu_run`: the trials ask for GPUs."""
    device = pick_device(cfg)
    if gpu_run and device.type == "cpu":
        return NoEstimate("the trials ask for GPUs and this machine has none: give --throughput IMG_PER_S "
                          "(a GPU's img/s for this setting) or run --dry-run on a GPU machine" + _quoted(cfg))
    key = speed_key(cfg, device)
    cached = _read_cache().get(key.text())
    if cached is not None:
        return Throughput(cached["img_per_s"], f"{cached['how']}; cached {cached['measured']} in {_cache_path()}")
    if device.type == "cpu" and cfg.data.image_size > CPU_BURST_MAX_SIZE:
        return NoEstimate(f"{cfg.model.backbone} at {cfg.data.image_size} px is not timed on a CPU (minutes, and "
                          "such runs go to GPUs): give --throughput IMG_PER_S or run --dry-run on a GPU machine")
    measured = burst(cfg)
    _write_cache(key, measured)
    return measured


def speed_key(cfg: Config, device: torch.device) -> SpeedKey:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        threads = cfg.train.num_threads or torch.get_num_threads()
        name = f"{CPU_DEVICE}{_cpu_model()}, {threads} thread{'s' if threads > 1 else ''}"
    return SpeedKey(name, cfg.model.backbone, cfg.data.image_size, cfg.train.batch_size, cfg.train.precision)


def burst(cfg: Config) -> Throughput:
    """Time the engine on random images of `cfg`'s size: the median of TIMED_EPOCHS warm PA epochs."""
    size, batch = cfg.data.image_size, cfg.train.batch_size
    epochs = 1 + WARMUP_EPOCHS + TIMED_EPOCHS
    run = make_config(cfg.data.target, cfg.to_flat(), SSPA_JT, {
        "train.epochs": epochs, "train.selection_epochs": 1, "model.pretrained": None,
    })
    rng = np.random.default_rng(0)
    n = BURST_BATCHES * batch
    data = JointData(_random_split(rng, n, size, "target"), _random_split(rng, n, size, "aux"), _random_split(rng, batch, size, "test"), None)
    with tempfile.TemporaryDirectory(prefix="sspa-burst-") as run_dir:
        metrics = fit(run, run_dir, data=data, log=lambda _line: None)
    timed = [float(h["img_per_s"]) for h in metrics["history"][1 + WARMUP_EPOCHS:]]
    median = statistics.median(timed)
    spread = (max(timed) - min(timed)) / median
    how = (f"measured: a burst of the engine, SSPA-JT with {cfg.model.backbone} at {size} px on "
           f"{pick_device(cfg).type}, the median of {len(timed)} PA epochs of {2 * BURST_BATCHES} batches of {batch} "
           f"after {1 + WARMUP_EPOCHS} warm-up epochs; they ranged {min(timed):,.0f}-{max(timed):,.0f} img/s, "
           f"a spread of {spread:.0%} of the median")
    return Throughput(median, how)


def _random_split(rng: np.random.Generator, n: int, size: int, name: str) -> Split:
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return Split(images, rng.integers(0, NUM_CLASSES, n).astype(np.int64), [f"{name}/{i}.png" for i in range(n)])


def _quoted(cfg: Config) -> str:
    """The measured GPU figures for `cfg`'s setting, to choose --throughput from: GPU_FIGURES and
    the GPU measurements in this cache (a cache folder shared with GPU machines holds theirs)."""
    cached = {SpeedKey(**entry["key"]): entry["img_per_s"] for entry in _read_cache().values()
              if not entry["key"]["device"].startswith(CPU_DEVICE)}
    figures = [f"{key.device} {img_per_s:.0f} img/s" for key, img_per_s in {**cached, **GPU_FIGURES}.items()
               if (key.backbone, key.image_size, key.batch_size, key.precision)
               == (cfg.model.backbone, cfg.data.image_size, cfg.train.batch_size, cfg.train.precision)]
    return f" (measured for {cfg.model.backbone} at {cfg.data.image_size} px: {'; '.join(figures)})" if figures else ""


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what the platform module says."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def _read_cache() -> dict[str, dict]:
    try:
        return json.loads(_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}   # no cache yet, or one cut short: measure again


def _write_cache(key: SpeedKey, measured: Throughput) -> None:
    path = _cache_path()
    with locked(path.with_suffix(".lock")):
        entries = _read_cache()
        entries[key.text()] = {**asdict(measured), "key": asdict(key), "measured": time.strftime("%Y-%m-%d")}
        atomic_write_text(path, json.dumps(entries, indent=2, sort_keys=True) + "\n")
