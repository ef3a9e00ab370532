"""The training loop shared by every joint-training method.

The Trainer owns what methods share: the backbone and the method's head, the optimiser (SGD with
cosine decay to 0, stepped per optimiser step, unless the method's own recipe is asked for), the
images on the device, augmentation, the steps, the per-epoch evaluation of the target's test split
and a checkpoint after every epoch. The method (engine/methods/, picked by ``method.name``) owns
each epoch's plan (data order, loss weights, labels, PAM's pairing), its loss, what it records
during a step and does after an epoch, and its state. The Trainer never asks which method it holds.

The parts live beside this file: the image store and device pick (images.py), the epoch's plan
(epoch_plan.py), evaluation (evaluate.py), the run folder's files (run_files.py), RNG state
(rng.py), checkpoints (checkpoint.py), the ranks (world.py), and the test-only fault points
(_faults.py, called only when a test sets their variables). Setup that can train another model or
read datasets (the data, the built-in pretrained backbone, the method's preparation) happens in
fit() (setup.py), before the Trainer is built.

Hot path: each epoch's plan is made on the host and sent to the device once per epoch; a step is
then gather -> augment -> (mixup) -> forward/backward with fixed shapes, and the only host syncs
are once per epoch (loss, the method's end of epoch, evaluation). fp16 is the exception:
GradScaler.step reads its inf/NaN flag on the host every step, which bf16 avoids.

Determinism: the data order, pairing and augmentation of epoch e are drawn from generators
seeded with (train.seed, e[, rank]), so a run's position in the data is just its epoch count, and
a resumed run replays exactly what an uninterrupted one does.
"""

from __future__ import annotations

import contextlib
import math
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist

from sspa_ray.config import EXECUTION_KEYS, Config
from sspa_ray.data.augment import augment
from sspa_ray.defaults import crop_padding
from sspa_ray.engine import _faults, pretrain
from sspa_ray.engine.checkpoint import latest_checkpoint, prune_checkpoints, save_checkpoint
from sspa_ray.engine.epoch_plan import EpochPlan
from sspa_ray.engine.evaluate import predict_classes
from sspa_ray.engine.failures import TrainingDiverged
from sspa_ray.engine.images import DeviceImages, keep_data_on_device, pick_device
from sspa_ray.engine.methods import JointMethod, build_method
from sspa_ray.engine.metrics import classification_metrics
from sspa_ray.engine.pam import mixup
from sspa_ray.engine.rng import rng_state, seed_of, set_rng_state
from sspa_ray.engine.run_files import write_metrics
from sspa_ray.engine.world import World
from sspa_ray.errors import ConfigError
from sspa_ray.model import build_model
from sspa_ray.outputs import BEST_BY, CHECKPOINTS_DIR, METRICS, EpochRecord, Stage


class Trainer:
    """One run of one method. ``fit()`` is the usual entry point; the object exposes its parts for tests.

    `data` is the loaded JointData; `model_cfg` is `cfg` with the built-in pretrained backbone
    resolved to its file (pretrain.resolved); `prepared` is the method's setup (prepare_method).
    fit() does all three, so building the Trainer trains nothing.
    """

    def __init__(self, cfg: Config, run_dir, *, data, model_cfg: Config | None = None, prepared: dict | None = None,
                 log: Callable[[str], None] = print):
        self.cfg = cfg.validate()
        self.run_dir = Path(run_dir)
        self.world = World.current()
        self.is_main = self.world.rank == 0
        self.log = log if self.is_main else (lambda _line: None)
        t = cfg.train
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        self.device = pick_device(cfg)
        cuda = self.device.type == "cuda"
        # Honoured on the CPU too: oneDNN's channels_last kernels are faster there as well
        # (`small`'s step ~1.3x, its max-pool ~3x; benchmarks/engine_step.py).
        self.channels_last = t.channels_last
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision) if cuda else None

        self.data = data
        self.method: JointMethod = build_method(cfg, data, self.device, prepared)
        parts = [data.target_train] + ([data.aux_train] if data.aux_train is not None else [])
        self.num_samples = self.method.num_samples
        images = [p.images for p in parts]
        resident = False
        if cuda and t.data_on_device:
            resident, why = keep_data_on_device(sum(i.nbytes for i in images) + data.test.images.nbytes,
                                                self.device, t.gpu_share)
            self.log(why)
        self.train_images = DeviceImages(images, self.device, resident)
        self.test_images = DeviceImages([data.test.images], self.device, resident)

        if t.batch_size % self.world.size:
            raise ConfigError(
                f"train.batch_size={t.batch_size} is not divisible by the {self.world.size} workers; "
                "choose a multiple of the worker count"
            )
        self.local_batch = t.batch_size // self.world.size
        steps = [self.method.steps(epoch) for epoch in range(t.epochs)]
        if min(steps) == 0:
            raise ConfigError(
                f"train.batch_size={t.batch_size} exceeds the {self.num_samples} training samples; "
                "lower train.batch_size"
            )
        self.padding = crop_padding(cfg)

        model_cfg = model_cfg or cfg
        if model_cfg.model.pretrained == pretrain.SYNTHETIC_PRETRAINED:
            raise ValueError("resolve the built-in backbone first: Trainer(..., model_cfg=pretrain.resolved(cfg))")
        torch.manual_seed(t.seed)
        np.random.seed(t.seed % 2**32)
        random.seed(t.seed)
        self.model = build_model(model_cfg, head=self.method.head).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        own = self.method.optimizer(self.model.parameters(), steps)
        if own is None:
            self.optimizer = torch.optim.SGD(
                self.model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay
            )
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=sum(steps))
            self.schedule_per_epoch = False
        else:
            self.optimizer, self.scheduler, self.schedule_per_epoch = own
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None
        self.epoch = 0  # finished epochs
        self.history: list[EpochRecord] = []
        self.last_eval: dict = {}
        self.faults = _faults.installed(self.run_dir)  # None unless a test set SSPA_TEST_* variables

    # ---- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "config": self.cfg.to_flat(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else {},
            "method": self.method.state_dict(),
            "rng": rng_state(),
            "history": self.history,
            "last_eval": self.last_eval,
        }

    def load_state_dict(self, state: dict) -> None:
        # Exactly the keys state_dict writes: no earlier format is upgraded (ARCHITECTURE.md, "One
        # format, no upgrades"), and a checkpoint is never half-loaded.
        expected = self.state_dict().keys()
        if state.keys() != expected:
            unknown, missing = sorted(state.keys() - expected), sorted(expected - state.keys())
            raise ConfigError(
                f"the checkpoint holds {', '.join(unknown) or 'no other keys'} and lacks {', '.join(missing) or 'none'} "
                "of this version's: resume with the commit that wrote it (experiment.json's runs), or start a new run"
            )
        current = self.cfg.to_flat()
        saved = state["config"]
        changed = [key for key, value in saved.items() if key not in EXECUTION_KEYS and current.get(key) != value]
        if changed:
            key = changed[0]
            raise ConfigError(
                f"the checkpoint was written with {key}={saved[key]!r}, not {self.cfg.get(key)!r}; "
                "resume with the run's own config"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler:
            self.scaler.load_state_dict(state["scaler"])
        self.method.load_state_dict(state["method"])
        set_rng_state(state["rng"])
        self.epoch = state["epoch"]
        self.history = list(state["history"])
        self.last_eval = dict(state["last_eval"])

    # ---- the run ---------------------------------------------------------------------------
    def run(self, *, report: Callable[[EpochRecord, Path | None], None] | None = None, resume: bool = False) -> dict:
        t = self.cfg.train
        checkpoints = self.run_dir / CHECKPOINTS_DIR
        if resume:
            found = latest_checkpoint(checkpoints, self.log)
            if found:
                self.load_state_dict(found[1])
                self.log(f"resuming from {found[0].name}")
            else:
                self.log(f"no valid checkpoint in {checkpoints}; starting from epoch 1")
        elif self.is_main:
            shutil.rmtree(checkpoints, ignore_errors=True)  # never mix with an older run's checkpoints
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        for line in self.method.notes(self.epoch) if self.is_main else ():
            self.log(line)
        model = self.training_model()
        if self.epoch == 0 and self.is_main:
            self.method.write_files(self.run_dir, 0)

        while self.epoch < t.epochs:
            stage = self.method.stage(self.epoch)
            if self.faults:
                self.faults.epoch_start(self.epoch, first_pa=stage == Stage.PA and self.epoch == t.selection_epochs)
            plan = self.plan()
            started = time.perf_counter()
            loss = self.train_epoch(model, plan, stage)
            self.method.end_epoch(stage)
            if self.schedule_per_epoch:
                self.scheduler.step()
            seconds = time.perf_counter() - started
            if not math.isfinite(loss):
                raise TrainingDiverged(self.epoch + 1, loss)
            self.epoch += 1
            self.last_eval = classification_metrics(self.data.test.labels, self._predict_test())
            record = self._record(stage, loss, t.batch_size * plan.steps / seconds)
            self.history.append(record)
            self.log(self._progress_line(dict(record)))
            written = None
            if self.is_main:
                self.method.write_files(self.run_dir, self.epoch)
                write_metrics(self.run_dir, self.summary())
                written = save_checkpoint(checkpoints, self.epoch, self.state_dict())
            if report is not None:
                report(record.copy(), written)
            if self.is_main:
                prune_checkpoints(checkpoints, keep=2)
            if self.faults:
                self.faults.epoch_end(self.epoch)
        return self.summary()

    def training_model(self) -> torch.nn.Module:
        """The model the steps run: DDP-wrapped across workers and compiled when the config asks."""
        model: torch.nn.Module = self.model
        if self.world.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.cfg.train.compile:
            model = cast(torch.nn.Module, torch.compile(model))  # an OptimizedModule, typed as a callable
        return model

    def plan(self) -> EpochPlan:
        """This rank's plan of the next epoch (``self.epoch``), from the method's state after the last one."""
        return self.method.plan(self.epoch, rank=self.world.rank, world_size=self.world.size)

    def autocast(self):
        """The autocast context of the steps and the evaluation (none without train.precision on CUDA)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.autocast_dtype)

    def train_epoch(self, model: torch.nn.Module, plan: EpochPlan, stage: Stage) -> float:
        """One epoch of steps; returns the mean weighted per-sample loss over the trained samples (one host sync)."""
        t = self.cfg.train
        method = self.method
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed_of(t.seed, self.epoch, 2, self.world.rank))
        totals = torch.zeros(2, device=self.device)  # weighted loss sum, weight sum
        halfway = plan.steps // 2 if self.faults else -1
        model.train()
        for step in range(plan.steps):
            if step == halfway and self.faults:
                self.faults.halfway(self.epoch)
            ids = plan.ids[step]
            x = augment(self.train_images.take(plan.ids_host[step], ids), generator, self.padding,
                        channels_last=self.channels_last)
            y = plan.labels[ids]
            if plan.partner is not None and plan.lam is not None:  # PAM's plans set both
                partner = plan.partner[step]
                x, y = mixup(x, partner, plan.lam[step]), y[partner]
            weight = plan.weight[step]
            with self.autocast():
                out = model(x)
            # The per-sample loss, averaged over the global batch's samples that count.
            weighted, count = (method.sample_loss(out, y, ids) * weight).sum(), weight.sum()
            loss = weighted / plan.norm[step]
            extra = method.batch_loss(out)
            if extra is not None:
                loss = loss + extra
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is None:
                loss.backward()
                self.optimizer.step()
            else:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            if not self.schedule_per_epoch:
                self.scheduler.step()
            totals += torch.stack([weighted.detach(), count])
            method.observe(stage, ids, out, y)
        if self.world.distributed:
            dist.all_reduce(totals)
        return (totals[0] / totals[1].clamp(min=1)).item()

    def _predict_test(self) -> np.ndarray:
        return predict_classes(self.model, self.test_images, len(self.data.test.labels),
                               probabilities=self.method.probabilities,
                               batch_size=self.cfg.train.eval_batch_size, rank=self.world.rank,
                               world_size=self.world.size, channels_last=self.channels_last, autocast=self.autocast)

    # ---- outputs ---------------------------------------------------------------------------
    def _record(self, stage: Stage, loss: float, img_per_s: float) -> EpochRecord:
        extra = self.method.record()
        record = {
            "epoch": self.epoch,
            "stage": Stage(stage).value,
            "loss": loss,
            "clean_share": extra.pop("clean_share"),
            **{key: self.last_eval[key] for key in METRICS},
            "img_per_s": img_per_s,
            **extra,
        }
        return cast(EpochRecord, record)  # the method's figures are EpochRecord's optional keys

    def _progress_line(self, r: dict) -> str:
        return (
            f"epoch {r['epoch']}/{self.cfg.train.epochs} {r['stage']}  loss {r['loss']:.4f}  {self.method.progress(r)}  "
            f"acc {r['accuracy']:.2%}  macro-F1 {r['macro_f1']:.2%}  {r['img_per_s']:.0f} img/s"
        )

    def summary(self) -> dict:
        """The content of metrics.json: the final epoch's figures, the best epoch, the history."""
        history = cast(list[dict[str, Any]], self.history)  # read by the names in METRICS and BEST_BY
        final = history[-1]
        best = max(history, key=lambda r: r[BEST_BY])  # first of equals
        out = {key: final[key] for key in METRICS}
        out.update(
            epochs_done=self.epoch,
            epochs=self.cfg.train.epochs,
            clean_share=final["clean_share"],
            best={**{key: best[key] for key in ("epoch", *METRICS)}, "selected_on": "test"},
            per_class=self.last_eval["per_class"],
            confusion=self.last_eval["confusion"],
        )
        out.update(self.method.summary())
        out["history"] = self.history
        return out
