"""The host-side work of an epoch against its steps, at the default 10% aux share and at 100%.

    python -m benchmarks.epoch_overhead [--rounds 5] [--threads 1]

The synthetic aux set is 23 times its target, as AffectNet is RAF-DB's, so a run at 100% trains
24,000 samples per epoch (375 steps of 64) where the default 10% trains 3300 (51 steps). Besides
its steps, every epoch plans its data order and PAM pairing on the host (``Trainer.plan``),
records each step's predictions for the SSM and re-selects at the end of an SS epoch, evaluates
the test split (600 images), scores the selection against the ground truth (``method.record``)
and writes a checkpoint. This times each of them (median of ``--rounds``) and one PA epoch's steps (once), with
the synthetic target's defaults (``small``, 32 px, batch 64) on random images of a run's sizes, and
prints each as a share of the steps. Per-sample work on the host would grow with the share; the
steps grow with it too, so the shares stay flat when there is none.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch

from benchmarks._engine import fixed_clean_mask, make_trainer, random_data
from sspa_ray.data.synthetic import split_sizes
from sspa_ray.engine.checkpoint import save_checkpoint
from sspa_ray.engine.evaluate import predict_classes
from sspa_ray.labels import NUM_CLASSES
from sspa_ray.outputs import Stage


def _median_ms(work: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def measure(share: float, rounds: int, threads: int) -> dict[str, float]:
    sizes = split_sizes(1.0)
    data = random_data(32, sizes["rafdb/train"], round(share * sizes["affectnet/train"]), sizes["rafdb/test"])
    data.aux_true_labels = np.random.default_rng(1).integers(0, NUM_CLASSES, len(data.aux_train.labels))
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = make_trainer({"model.backbone": "small", "train.num_threads": threads}, data, run_dir)
        method, batch = trainer.method, trainer.cfg.train.batch_size
        clean = fixed_clean_mask(trainer)
        method.clean = clean
        logits = torch.randn(trainer.cfg.experts, batch, NUM_CLASSES)

        def plan(stage: Stage):
            trainer.epoch = 0 if stage == Stage.SS else trainer.cfg.train.selection_epochs
            return trainer.plan()

        ss = plan(Stage.SS)

        def observe_epoch() -> None:
            for ids in ss.ids:
                method.selector.observe(ids, logits, method.labels_device[ids])

        figures = {
            "samples": method.num_samples,
            "steps": len(ss.ids),
            "plan SS": _median_ms(lambda: plan(Stage.SS), rounds),
            "plan PA": _median_ms(lambda: plan(Stage.PA), rounds),
            "SSM observe": _median_ms(observe_epoch, rounds),
            "SSM end_epoch": _median_ms(method.selector.end_epoch, rounds),
            "evaluate": _median_ms(lambda: predict_classes(trainer.model, trainer.test_images, len(data.test.labels),
                                                           probabilities=method.probabilities,
                                                           batch_size=trainer.cfg.train.eval_batch_size,
                                                           channels_last=trainer.channels_last), rounds),
            "selection": _median_ms(method.record, rounds),
            "checkpoint": _median_ms(lambda: save_checkpoint(trainer.run_dir / "checkpoints", 1, trainer.state_dict()),
                                     rounds),
        }
        method.clean = clean
        pa, model = plan(Stage.PA), trainer.training_model()
        figures["steps (one PA epoch)"] = _median_ms(lambda: trainer.train_epoch(model, pa, Stage.PA), 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = {share: measure(share, args.rounds, args.threads) for share in (0.1, 1.0)}
    every_epoch = ("evaluate", "selection", "checkpoint")
    stages = {"SS": ("plan SS", "SSM observe", "SSM end_epoch", *every_epoch), "PA": ("plan PA", *every_epoch)}
    print(f"{'ms per epoch':22}" + "".join(f"{f'aux {share:.0%}':>16}" for share in rows))
    for key in ("samples", "steps", *dict.fromkeys(stages["SS"] + stages["PA"]), "steps (one PA epoch)"):
        cells = []
        for figures in rows.values():
            value = figures[key]
            share = "" if key in ("samples", "steps", "steps (one PA epoch)") else f" ({value / figures['steps (one PA epoch)']:.1%})"
            cells.append(f"{value:,.0f}" if key in ("samples", "steps") else f"{value:.1f}{share}")
        print(f"{key:22}" + "".join(f"{cell:>16}" for cell in cells))
    for share, figures in rows.items():
        for stage, keys in stages.items():
            total = sum(figures[key] for key in keys)
            print(f"aux {share:.0%}, {stage} epoch: host work {total:.0f} ms, {total / figures['steps (one PA epoch)']:.1%} "
                  "of an epoch's steps")


if __name__ == "__main__":
    main()
