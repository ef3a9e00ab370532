"""A profile of one PA-stage epoch, and a check that no work is done per sample in Python.

    python -m benchmarks.profile_pa [--rows 15] [--threads 1] [--cuda-step]

1. torch.profiler (CPU activities, plus CUDA ones when a GPU is visible) over one PA-stage epoch
   as the engine runs it (``Trainer.plan``, which plans PAM on the host, then
   ``Trainer.train_epoch``), with the synthetic benchmark's defaults: ``small``, 32 px,
   batch 64, data of a default run's size (3300 training images). Prints the top ops by self
   CPU time.
   With ``--cuda-step`` (a GPU): instead, resnet18 at 224 px, batch 256, bf16 + channels_last +
   data on the device, the setup the README's GPU goal is stated for; top ops by GPU time.
2. The same epoch at batch 32 and at batch 128, both with 16 steps: the aten ops the profiler
   records and the Python function calls cProfile counts, per step. Python work per sample would
   make the counts grow with the batch (4x the samples per step); equal counts show there is none.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks._engine import EngineEpoch, make_trainer, random_data, synthetic_sized_data

STEPS = 16


def _activities() -> list[ProfilerActivity]:
    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])


def _pa_epoch(data, batch: int, threads: int, run_dir: str) -> EngineEpoch:
    settings = {"model.backbone": "small", "train.batch_size": batch, "train.num_threads": threads}
    epoch = EngineEpoch(make_trainer(settings, data, run_dir), "PA")
    epoch()  # warm-up: first-call allocations and kernel choices are not part of the profile
    return epoch


def _cuda_pa_epoch(run_dir: str) -> EngineEpoch:
    settings = {"model.backbone": "resnet18", "train.batch_size": 256, "train.precision": "bf16",
                "train.channels_last": True, "train.data_on_device": True}
    epoch = EngineEpoch(make_trainer(settings, random_data(224, 2048, 4096), run_dir), "PA")
    epoch()
    return epoch


def counts(epoch: EngineEpoch) -> dict[str, float]:
    """aten ops, Python function calls and milliseconds per step of one epoch."""
    with profile(activities=_activities()) as prof:
        epoch()
    aten = sum(event.name.startswith("aten::") for event in prof.events())
    python = cProfile.Profile()
    start = time.perf_counter()
    python.enable()
    epoch()
    python.disable()
    seconds = time.perf_counter() - start  # includes cProfile's own overhead; for scale only
    calls = pstats.Stats(python).total_calls
    return {"aten": aten / epoch.steps, "python": calls / epoch.steps, "ms": seconds / epoch.steps * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=15, help="rows of the top-ops table")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--cuda-step", action="store_true",
                        help="profile resnet18, 224 px, batch 256, bf16 + channels_last on the GPU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.cuda_step and not torch.cuda.is_available():
        print("--cuda-step needs a CUDA GPU; none is visible")
        return
    with tempfile.TemporaryDirectory(prefix="sspa-bench-profile-") as run_dir:
        if args.cuda_step:
            epoch = _cuda_pa_epoch(run_dir)
            with profile(activities=_activities()) as prof:
                epoch()
                torch.cuda.synchronize()
            print(f"One PA-stage epoch on {torch.cuda.get_device_name()}: resnet18, 224 px, batch 256, bf16 + "
                  f"channels_last, data on the device, {epoch.steps} steps; top {args.rows} ops by GPU time")
            print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=args.rows,
                                            max_name_column_width=45))
            return
        epoch = _pa_epoch(synthetic_sized_data(32), 64, args.threads, run_dir)
        device = epoch.trainer.device
        with profile(activities=_activities()) as prof:
            epoch()
        sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(f"One PA-stage epoch on {device}: small, 32 px, batch 64, {epoch.steps} steps "
              f"(plan on the host + every step); top {args.rows} ops by {sort}")
        print(prof.key_averages().table(sort_by=sort, row_limit=args.rows, max_name_column_width=45))

        print(f"Per step, one PA-stage epoch of {STEPS} steps (after a warm-up epoch):")
        print(f"{'batch':>6} {'aten ops':>9} {'Python calls':>13} {'ms (cProfiled)':>15}")
        rows = {}
        for batch in (32, 128):
            n = STEPS * batch
            rows[batch] = counts(_pa_epoch(random_data(32, n // 3, n - n // 3), batch, args.threads, run_dir))
            r = rows[batch]
            print(f"{batch:>6} {r['aten']:9.2f} {r['python']:13.2f} {r['ms']:15.1f}")
        same = all(rows[32][key] == rows[128][key] for key in ("aten", "python"))
        print(f"4x the samples per step, same aten op and Python call counts: {'yes' if same else 'NO'} "
              "(no per-sample Python work)")


if __name__ == "__main__":
    main()
