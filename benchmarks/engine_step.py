"""The SSPA-JT training step against a plain cross-entropy step with the same backbone and batch.

    python -m benchmarks.engine_step [--rounds 9] [--threads 1] [--skip-cpu] [--skip-cuda]

Four epochs per configuration are timed side by side in interleaved rounds (the order rotates
every round). It prints the median time per step and, as "x plain", the median over rounds of
each epoch's time divided by the same round's plain epoch:

  plain        a hand-written CE loop: backbone + linear head, mean CE, SGD, cosine schedule;
  engine, off  the engine's epoch with modules.ssm/moe/pam off;
  SSPA-JT SS   the engine's SS-stage epoch: MoE head (k=3), weighted CE, SSM record and re-selection;
  SSPA-JT PA   the engine's PA-stage epoch: MoE head, PAM pairing (planned on the host once per
               epoch) and Mixup.

All four use the same data, gather, on-device augmentation, precision and memory format. The
engine epochs run through ``Trainer.plan`` and ``Trainer.train_epoch``, the code ``fit`` runs.

Configurations: on the CPU, ``small`` at 32 px, batch 64, on data of the synthetic benchmark's
size (the goal: SSPA-JT <= 1.10x plain), in NCHW and in channels_last memory, and ``resnet18`` at
112 px, batch 16. On CUDA when present: resnet18 at 224 px, batch 128 and 256, bf16 +
channels_last, data resident on the device; there it also counts the host syncs in one epoch
(expected: 1, the epoch's loss).
"""

from __future__ import annotations

import argparse
import tempfile
import warnings

import torch

from benchmarks._engine import (
    MODULES_OFF,
    SSPA,
    EngineEpoch,
    PlainEpoch,
    interleaved,
    make_trainer,
    median,
    random_data,
    synthetic_sized_data,
)

GOAL = 1.10


def compare(title: str, data, settings: dict, rounds: int, run_dir: str) -> tuple[dict[str, float], dict]:
    """Time plain / engine-off / SS / PA on the same data; print; return the ratios to plain and the runs."""
    off = make_trainer({**settings, **MODULES_OFF}, data, run_dir)
    full = make_trainer({**settings, **SSPA}, data, run_dir)
    # Separate trainers for SS and PA: each keeps its own model and SSM state.
    full_pa = make_trainer({**settings, **SSPA}, data, run_dir)
    runs = {
        "plain": PlainEpoch(off),
        "engine, modules off": EngineEpoch(off, "SS"),
        "SSPA-JT SS stage": EngineEpoch(full, "SS"),
        "SSPA-JT PA stage": EngineEpoch(full_pa, "PA"),
    }
    seconds = interleaved(runs, rounds, full.device)
    steps, batch = full.steps, full.cfg.train.batch_size
    per_step = {name: median(values) / steps * 1e3 for name, values in seconds.items()}
    # Each round's ratio to that round's plain epoch, then their median: load drift cancels out.
    ratios = {name: median([a / b for a, b in zip(values, seconds["plain"], strict=True)]) for name, values in seconds.items()}
    print(f"\n{title}: batch {batch}, {steps} steps per epoch, median of {rounds} interleaved rounds")
    print(f"  {'':22} {'ms/step':>9} {'img/s':>8} {'x plain':>8}")
    for name, ms in per_step.items():
        print(f"  {name:22} {ms:9.2f} {batch / ms * 1e3:8.0f} {ratios[name]:7.3f}x")
    return ratios, runs


def host_syncs(run) -> int:
    """Synchronising CUDA calls made during `run()`, as torch's sync debug mode reports them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing CUDA operation" in str(w.message) for w in caught)


def cpu_section(args, run_dir: str) -> list[str]:
    verdicts = []
    common = {"train.device": "cpu", "train.num_threads": args.threads}
    data = synthetic_sized_data(32)
    for channels_last in (False, True):
        ratios, _ = compare(
            f"CPU, small, 32 px (synthetic benchmark size), train.channels_last={str(channels_last).lower()}",
            data,
            {**common, "model.backbone": "small", "train.batch_size": 64, "train.channels_last": channels_last},
            args.rounds,
            run_dir,
        )
        for stage in ("SS", "PA"):
            ratio = ratios[f"SSPA-JT {stage} stage"]
            verdicts.append(f"CPU small{' channels_last' if channels_last else ''} {stage} step: {ratio:.3f}x plain "
                            f"(goal <= {GOAL:.2f}x: {'met' if ratio <= GOAL else 'NOT met'})")
    compare(
        "CPU, resnet18, 112 px",
        random_data(112, 24, 40),  # 4 steps of 16
        {**common, "model.backbone": "resnet18", "train.batch_size": 16},
        max(3, args.rounds // 2),
        run_dir,
    )
    return verdicts


def cuda_section(args, run_dir: str) -> list[str]:
    verdicts = []
    data = random_data(224, 2048, 4096)  # 6144 images: 48 steps of 128, 24 of 256
    gpu = torch.cuda.get_device_name()
    for batch in (128, 256):
        settings = {
            "train.device": "cuda", "model.backbone": "resnet18", "train.batch_size": batch,
            "train.precision": "bf16", "train.channels_last": True, "train.data_on_device": True,
        }
        title = f"CUDA ({gpu}), resnet18, 224 px, bf16 + channels_last, data on device"
        ratios, runs = compare(title, data, settings, args.rounds, run_dir)
        for stage in ("SS", "PA"):
            name = f"SSPA-JT {stage} stage"
            epoch = runs[name]  # already warmed up by compare()
            verdicts.append(
                f"CUDA batch {batch} {stage} step: {ratios[name]:.3f}x plain; "
                f"host syncs in one epoch of {epoch.steps} steps: {host_syncs(epoch)}"
            )
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9,
                        help="interleaved timed rounds after one warm-up (resnet18 on the CPU: half as many)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: steadier figures on a shared machine)")
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--skip-cuda", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="sspa-bench-step-") as run_dir:
        if not args.skip_cpu:
            verdicts += cpu_section(args, run_dir)
        if torch.cuda.is_available() and not args.skip_cuda:
            verdicts += cuda_section(args, run_dir)
        elif not args.skip_cuda:
            print("\nCUDA: no device visible; the GPU configurations were not run")
    print()
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    main()
