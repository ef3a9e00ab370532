"""SSPA-JT training throughput on one CUDA GPU, and trials per hour when 1, 2 or 4 trials share it.

    python -m benchmarks.gpu_throughput [--images 6144] [--epochs 3] [--no-compile]
                                        [--share 1 2 4] [--share-seconds 30]

Needs CUDA: without it, it prints one line and exits 0 (``--cpu-check`` runs the same code on the
CPU at toy sizes, to check the script; those figures mean nothing). It imports only the config,
data, model and engine layers, so it runs on a machine with torch, torchvision, scipy and pandas
and no Ray.

1. img/s of PA-stage epochs run by the engine's own code (``Trainer.plan`` + ``train_epoch``:
   augmentation, Mixup, MoE head, weighted CE, SGD) on random 224x224 images, for resnet18 and
   arm, batch 128 and 256, in cumulative setups:
     fp32                   batches gathered on the host, copied to the GPU every step
     bf16                   + bf16 autocast
     bf16 + channels_last   + channels_last
     + data on device       + the uint8 dataset resident on the GPU
     + torch.compile        + train.compile (skip with --no-compile)
2. trials per hour when 1, 2 and 4 engine processes train at once on the GPU, as fractional
   ``--gpus-per-trial`` packs them (resnet18, batch 128, bf16 + channels_last + data on device):
   every process warms up, waits for the others, then trains for --share-seconds. The summed
   img/s is turned into trials per hour of a reference trial: RAF-DB train (12,271 images) plus
   10% of AffectNet's 7-class train (28,390), 80 epochs; training steps only (the per-epoch test
   evaluation and checkpoint add a few percent).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._engine import EngineEpoch, interleaved, make_trainer, median, random_data

REFERENCE_TRIAL_IMAGES = 80 * (12_271 + 28_390)
GOAL_IMG_S = 15_000
SETUPS = [
    ("fp32", {"train.precision": "fp32", "train.channels_last": False, "train.data_on_device": False}),
    ("bf16", {"train.precision": "bf16", "train.channels_last": False, "train.data_on_device": False}),
    ("bf16 + channels_last", {"train.precision": "bf16", "train.channels_last": True, "train.data_on_device": False}),
    ("+ data on device", {"train.precision": "bf16", "train.channels_last": True, "train.data_on_device": True}),
    ("+ torch.compile", {"train.precision": "bf16", "train.channels_last": True, "train.data_on_device": True,
                         "train.compile": True}),
]
SHARED_SETUP = {"model.backbone": "resnet18", **SETUPS[3][1]}


def _data(n: int):
    return random_data(224, n // 3, n - n // 3)


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def throughput(settings: dict, data, epochs: int, device: str) -> float:
    """img/s of PA-stage epochs (median of `epochs` timed epochs after warm-up)."""
    with tempfile.TemporaryDirectory(prefix="sspa-bench-gpu-") as run_dir:
        trainer = make_trainer({"train.device": device, **settings}, data, run_dir)
        epoch = EngineEpoch(trainer, "PA")
        # torch.compile traces on the first call; a second warm-up epoch catches any recompilation.
        warmup = 2 if settings.get("train.compile") else 1
        seconds = interleaved({"PA": epoch}, epochs, trainer.device, warmup=warmup)["PA"]
        return epoch.steps * epoch.batch / median(seconds)


def setup_table(args) -> dict[tuple[str, int], list[float]]:
    data = _data(args.images)
    setups = [s for s in SETUPS if not (s[1].get("train.compile") and args.no_compile)]
    print(f"\nimg/s, PA-stage epochs of {args.images} random 224x224 images, median of {args.epochs}")
    print(f"{'backbone':>9} {'batch':>6} " + " ".join(f"{name:>21}" for name, _ in setups))
    table = {}
    for backbone in args.backbones:
        for batch in args.batches:
            row = []
            for name, setup in setups:
                try:
                    row.append(throughput({"model.backbone": backbone, "train.batch_size": batch, **setup},
                                          data, args.epochs, args.device))
                except Exception as exc:  # e.g. torch.compile without a working compiler toolchain
                    print(f"  {backbone} batch {batch} {name}: failed: {str(exc).strip().splitlines()[0][:200]}")
                    row.append(float("nan"))
                _free_memory()
            table[backbone, batch] = row
            print(f"{backbone:>9} {batch:>6} " + " ".join(f"{v:21.0f}" for v in row))
    base = [name for name, _ in setups]
    for (backbone, batch), row in table.items():
        print(f"  {backbone} batch {batch}: " + ", ".join(
            f"{name} {value / row[0]:.2f}x fp32" for name, value in zip(base[1:], row[1:], strict=True)))
    return table


def _worker(args) -> None:
    """One of the processes sharing the GPU: warm up, say ready, wait for go, train, report."""
    torch.set_num_threads(2)  # the CPU work of a step is small; leave cores to the other trials
    data = _data(args.share_images)
    with tempfile.TemporaryDirectory(prefix="sspa-bench-share-") as run_dir:
        epoch = EngineEpoch(make_trainer({"train.device": args.device, "train.batch_size": args.share_batch, **SHARED_SETUP}, data, run_dir), "PA")
        epoch()
        print("ready", flush=True)
        sys.stdin.readline()
        start, images = time.perf_counter(), 0
        while time.perf_counter() - start < args.share_seconds:
            epoch()  # ends with the loss's .item(), so the GPU work is finished when it returns
            images += epoch.steps * epoch.batch
        print(json.dumps({"images": images, "seconds": time.perf_counter() - start}), flush=True)


def trials_per_hour(args) -> None:
    print(f"\ntrials sharing one GPU: resnet18, batch {args.share_batch}, bf16 + channels_last + data on device, "
          f"{args.share_seconds:g} s of training each; reference trial = {REFERENCE_TRIAL_IMAGES:,} training images")
    print(f"{'trials':>7} {'img/s each':>11} {'img/s total':>12} {'trials/hour':>12} {'x one trial':>12}")
    single = None
    for n in args.share:
        command = [sys.executable, "-m", "benchmarks.gpu_throughput", "--worker", "--device", args.device,
                   "--share-seconds", str(args.share_seconds), "--share-images", str(args.share_images),
                   "--share-batch", str(args.share_batch)]
        root = Path(__file__).resolve().parent.parent
        procs = [subprocess.Popen(command, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 for _ in range(n)]
        try:
            for proc in procs:
                if proc.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"a sharing trial failed to start (exit code {proc.wait()})")
            for proc in procs:  # start them together
                proc.stdin.write("go\n")
                proc.stdin.flush()
            results = [json.loads(proc.stdout.readline() or "null") for proc in procs]
            if None in results:
                raise RuntimeError("a sharing trial failed while training; run it alone to see its error")
        finally:
            for proc in procs:
                proc.stdin.close()
                proc.wait()
        rates = [r["images"] / r["seconds"] for r in results]
        total = sum(rates)
        single = single or total
        per_hour = total * 3600 / REFERENCE_TRIAL_IMAGES
        print(f"{n:>7} {total / n:11.0f} {total:12.0f} {per_hour:12.2f} {total / single:11.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "arm"])
    parser.add_argument("--batches", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--images", type=int, default=6144, help="random training images of the setup table")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per cell, after warm-up")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile setup")
    parser.add_argument("--share", nargs="+", type=int, default=[1, 2, 4], help="trials sharing the GPU")
    parser.add_argument("--share-seconds", type=float, default=30.0)
    parser.add_argument("--share-images", type=int, default=2048, help="random training images per sharing trial")
    parser.add_argument("--share-batch", type=int, default=128)
    parser.add_argument("--cpu-check", action="store_true", help="run on the CPU at toy sizes to check the script")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    if args.cpu_check:
        args.device, args.no_compile = "cpu", True
        args.batches, args.images, args.epochs = [2], 4, 1
        args.share, args.share_seconds, args.share_images, args.share_batch = [1, 2], 2.0, 4, 2
        torch.set_num_threads(1)
        print("--cpu-check: the CPU at toy sizes; the figures only show that the script runs")
    elif not torch.cuda.is_available():
        print("gpu_throughput: no CUDA device visible; nothing measured (run it on a machine with a GPU)")
        return
    else:
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    table = setup_table(args)
    resnet = [v for (backbone, _), row in table.items() if backbone == "resnet18" for v in row if v == v]
    if resnet and not args.cpu_check:
        best = max(resnet)
        print(f"resnet18 at 224 px, best batch and setup: {best:.0f} img/s (goal >= {GOAL_IMG_S:,}: "
              f"{'met' if best >= GOAL_IMG_S else 'NOT met'})")
    trials_per_hour(args)


if __name__ == "__main__":
    main()
