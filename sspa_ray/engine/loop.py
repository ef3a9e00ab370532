"""The two-stage SSPA-JT training loop (paper Algorithm 3).

SS stage (epochs < ``train.selection_epochs``): every training sample goes forward; the loss
covers the samples that were clean after the previous epoch (all at first); the SSM re-selects
from the predictions of those same forward passes. PA stage: the clean/noisy sets are frozen and
PAM replaces each batch's noisy samples by Mixups with clean ones (without PAM they get zero
loss weight). SGD with cosine decay to 0, stepped per optimiser step. The target's test split is
evaluated after every epoch, and a checkpoint is written after every epoch.

Hot path: each epoch's data order, PAM pairing and loss weights are planned on the host from
CPU copies (the clean mask changes only between epochs) and sent to the device once per epoch;
a step is then gather -> augment -> (mixup) -> forward/backward with fixed shapes, and the only
host syncs are once per epoch (loss, SSM selection, evaluation). fp16 is the exception:
GradScaler.step reads its inf/NaN flag on the host every step, which bf16 avoids.

Determinism: the data order, pairing and augmentation of epoch e are drawn from generators
seeded with (train.seed, e[, rank]), so a run's position in the data is just its epoch count, and
a resumed run replays exactly what an uninterrupted one does.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from sspa_ray.config import EXECUTION_KEYS, crop_padding, upgrade_flat
from sspa_ray.data.augment import augment, normalize
from sspa_ray.engine import _faults, pretrain
from sspa_ray.engine.checkpoint import atomic_write_text, latest_checkpoint, prune_checkpoints, save_checkpoint
from sspa_ray.engine.metrics import classification_metrics, selection_metrics
from sspa_ray.engine.pam import mixup, pair_plan, trained_mask
from sspa_ray.engine.selection import SampleSelector, horizon_warning
from sspa_ray.errors import ConfigError
from sspa_ray.labels import CLASSES, NUM_CLASSES
from sspa_ray.model import build_model, expert_probabilities
from sspa_ray.outputs import CHECKPOINTS_DIR, METRICS, METRICS_FILE, SELECTION_FILE, Stage

class TrainingDiverged(RuntimeError):
    """The epoch's loss was NaN or infinite."""

    def __init__(self, epoch: int, loss: float):
        self.epoch, self.loss = epoch, loss
        super().__init__(f"training diverged in epoch {epoch}: loss {loss}; try a lower train.lr")


class TrainingOutOfMemory(RuntimeError):
    """The device ran out of memory; the message says which batch size and what to try."""

    def __init__(self, cfg):
        t = cfg.train
        super().__init__(
            f"out of memory at train.batch_size={t.batch_size} (train.eval_batch_size={t.eval_batch_size}, "
            f"data.image_size={cfg.data.image_size}): lower train.batch_size, set train.precision=bf16, "
            "set train.data_on_device=false, or give each trial more of the GPU (--gpus-per-trial)"
        )


@dataclass(frozen=True)
class _World:
    rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @classmethod
    def current(cls) -> "_World":
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()


def _pick_device(cfg) -> torch.device:
    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is visible; set train.device=auto or cpu")
    if cfg.train.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


class _Images:
    """uint8 NHWC images of one or more splits behind one index space.

    On CUDA with ``train.data_on_device`` (and room for it) they are copied to the device once;
    otherwise batches are gathered on the host (from the memory-mapped cache) and sent over.
    """

    def __init__(self, parts: list[np.ndarray], device: torch.device, resident: bool):
        self.parts = parts
        self.bounds = np.cumsum([0] + [len(p) for p in parts])
        self.device = device
        self.resident = None
        if resident:
            self.resident = torch.empty((int(self.bounds[-1]), *parts[0].shape[1:]), dtype=torch.uint8, device=device)
            for part, start in zip(parts, self.bounds):
                for a in range(0, len(part), 4096):
                    chunk = np.array(part[a : a + 4096])
                    self.resident[start + a : start + a + len(chunk)].copy_(torch.from_numpy(chunk))

    def _send(self, batch: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(batch)
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def take(self, ids_host: np.ndarray, ids_device: torch.Tensor) -> torch.Tensor:
        if self.resident is not None:
            return self.resident[ids_device]
        out = np.empty((len(ids_host), *self.parts[0].shape[1:]), dtype=np.uint8)
        part_of = np.searchsorted(self.bounds, ids_host, side="right") - 1
        for i, part in enumerate(self.parts):
            mine = part_of == i
            out[mine] = part[ids_host[mine] - self.bounds[i]]
        return self._send(out)

    def range(self, start: int, stop: int) -> torch.Tensor:
        if self.resident is not None:
            return self.resident[start:stop]
        return self._send(np.array(self.parts[0][start:stop]))


@dataclass
class _Plan:
    """One epoch of steps for this rank, all [steps, local_batch], on the device."""

    ids: torch.Tensor  # training-sample ids
    ids_host: np.ndarray
    weight: torch.Tensor  # loss weight (0/1)
    # [steps]: the divisor of each step's weighted CE sum. DDP averages the ranks' gradients, so
    # each rank divides by (weighted samples of the whole global batch) / world size: every sample
    # then weighs the same as on one device, whatever its rank's own count.
    norm: torch.Tensor
    partner: torch.Tensor | None = None  # PAM: position of the clean sample mixed in
    lam: torch.Tensor | None = None  # PAM: its Mixup weight


GIB = 2**30


def keep_data_on_device(nbytes: int, device: torch.device, share: float) -> tuple[bool, str]:
    """Whether the uint8 dataset (`nbytes`) is copied to the GPU, and a log line saying which path.

    The budget is this run's `share` of the GPU (``train.gpu_share``; trials packed on one GPU all
    start by seeing the whole free memory) and no more than is free to it: the driver's free
    memory plus what PyTorch's allocator in this process holds unused (left by an earlier trial of
    a reused process). Half the budget is left for the model, activations and the allocator.
    """
    free, total = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    budget = min(share * total, free + cached)
    fits = 2 * nbytes <= budget
    where = "stays on the GPU" if fits else "stays on the host and each batch is copied over"
    return fits, (f"train.data_on_device: the dataset ({nbytes / GIB:.2f} GiB) {where}; budget {budget / GIB:.2f} "
                  f"GiB = min({share:g} of {total / GIB:.1f} GiB, {free / GIB:.1f} free + {cached / GIB:.1f} cached), "
                  "the data may take half")


def _seed(*words: int) -> int:
    return int(np.random.SeedSequence(list(words)).generate_state(1)[0])


def _rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "gauss": gauss},
        "python": random.getstate(),
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])


class Trainer:
    """One SSPA-JT run. ``fit()`` is the usual entry point; the object exposes its parts for tests."""

    def __init__(self, cfg, run_dir, *, data=None, log: Callable[[str], None] = print):
        self.cfg = cfg.validate()
        self.run_dir = Path(run_dir)
        self.world = _World.current()
        self.is_main = self.world.rank == 0
        self.log = log if self.is_main else (lambda _line: None)
        t = cfg.train
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        self.device = _pick_device(cfg)
        cuda = self.device.type == "cuda"
        # Honoured on the CPU too: oneDNN's channels_last kernels are faster there as well
        # (`small`'s step ~1.3x, its max-pool ~3x; benchmarks/engine_step.py).
        self.channels_last = t.channels_last
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision) if cuda else None

        if data is None:
            from sspa_ray.data import load_joint_data

            data = load_joint_data(cfg, progress=self.is_main)
        self.data = data
        parts = [data.target_train] + ([data.aux_train] if data.aux_train is not None else [])
        self.n_target = len(data.target_train.labels)
        self.labels = np.concatenate([p.labels for p in parts]).astype(np.int64)
        self.num_samples = len(self.labels)
        images = [p.images for p in parts]
        resident = False
        if cuda and t.data_on_device:
            resident, why = keep_data_on_device(sum(i.nbytes for i in images) + data.test.images.nbytes,
                                                self.device, t.gpu_share)
            self.log(why)
        self.train_images = _Images(images, self.device, resident)
        self.test_images = _Images([data.test.images], self.device, resident)
        self.labels_device = torch.from_numpy(self.labels).to(self.device)

        if t.batch_size % self.world.size:
            raise ConfigError(
                f"train.batch_size={t.batch_size} is not divisible by the {self.world.size} workers; "
                "choose a multiple of the worker count"
            )
        self.local_batch = t.batch_size // self.world.size
        self.steps = self.num_samples // t.batch_size
        if self.steps == 0:
            raise ConfigError(
                f"train.batch_size={t.batch_size} exceeds the {self.num_samples} training samples; "
                "lower train.batch_size"
            )
        self.padding = crop_padding(cfg)

        model_cfg = pretrain.resolved(cfg)  # the built-in pretrained backbone, trained on first use
        torch.manual_seed(t.seed)
        np.random.seed(t.seed % 2**32)
        random.seed(t.seed)
        self.model = build_model(model_cfg).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=t.epochs * self.steps)
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None
        is_target = torch.arange(self.num_samples) < self.n_target
        self.selector = SampleSelector(
            self.num_samples,
            cfg.experts,
            NUM_CLASSES,
            cfg.ssm.momentum,
            always_clean=is_target if cfg.modules.fix_target else None,
            device=self.device,
        )
        self.epoch = 0  # finished epochs
        self.history: list[dict] = []
        self.last_eval: dict = {}

    # ---- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "data_position": {"epoch": self.epoch, "step": 0},
            "config": self.cfg.to_flat(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else {},
            "selector": self.selector.state_dict(),
            "rng": _rng_state(),
            "history": self.history,
            "last_eval": self.last_eval,
        }

    def load_state_dict(self, state: dict) -> None:
        current = self.cfg.to_flat()
        saved = upgrade_flat(state["config"])  # a checkpoint of an earlier version may hold crop padding -1
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
        self.selector.load_state_dict(state["selector"])
        _set_rng_state(state["rng"])
        self.epoch = state["epoch"]
        self.history = list(state["history"])
        self.last_eval = dict(state["last_eval"])

    # ---- the run ---------------------------------------------------------------------------
    def run(self, *, report: Callable[[dict, Path | None], None] | None = None, resume: bool = False) -> dict:
        cfg, t = self.cfg, self.cfg.train
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
        warning = horizon_warning(cfg)
        if warning and self.is_main and self.epoch < t.selection_epochs:
            self.log(warning)
        model = self._training_model()
        clean = self.selector.clean.cpu().numpy()
        if self.epoch == 0 and t.selection_epochs == 0 and self.is_main:
            self._write_selection(clean)

        while self.epoch < t.epochs:
            stage = Stage.SS if self.epoch < t.selection_epochs else Stage.PA
            if stage == Stage.PA and self.epoch == t.selection_epochs:
                _faults.kill_point("stage_switch")
            plan = self._plan(stage, clean)
            started = time.perf_counter()
            loss = self._train_epoch(model, plan, stage)
            if stage == Stage.SS and cfg.modules.ssm:
                self.selector.end_epoch()
            clean = self.selector.clean.cpu().numpy()
            seconds = time.perf_counter() - started
            if not math.isfinite(loss):
                raise TrainingDiverged(self.epoch + 1, loss)
            self.epoch += 1
            self.last_eval = classification_metrics(self.data.test.labels, self._predict_test())
            record = self._record(stage, loss, clean, t.batch_size * self.steps / seconds)
            self.history.append(record)
            self.log(self._progress_line(record))
            written = None
            if self.is_main:
                if self.epoch == t.selection_epochs:
                    self._write_selection(clean)
                atomic_write_text(self.run_dir / METRICS_FILE, json.dumps(self.summary(), indent=1) + "\n")
                written = save_checkpoint(checkpoints, self.epoch, self.state_dict())
            if report is not None:
                report(dict(record), written)
            if self.is_main:
                prune_checkpoints(checkpoints, keep=2)
            _faults.crash_point(self.epoch)
        return self.summary()

    def _training_model(self) -> torch.nn.Module:
        model = self.model
        if self.world.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.cfg.train.compile:
            model = torch.compile(model)
        return model

    def _plan(self, stage: str, clean: np.ndarray) -> _Plan:
        cfg, t = self.cfg, self.cfg.train
        order = np.random.default_rng([t.seed, self.epoch, 0]).permutation(self.num_samples)
        every_rank = order[: self.steps * t.batch_size].reshape(self.steps, self.world.size, self.local_batch)
        ids = np.ascontiguousarray(every_rank[:, self.world.rank])
        pam = stage == Stage.PA and cfg.modules.pam
        # The weights of every rank's share are known here, so the global count needs no sync.
        weighted = trained_mask(clean[every_rank]) if pam else clean[every_rank]
        norm = np.maximum(weighted.sum(axis=(1, 2)), 1) / self.world.size

        def send(array: np.ndarray, dtype=None) -> torch.Tensor:
            return torch.from_numpy(array).to(self.device, dtype=dtype, non_blocking=True)

        plan = _Plan(ids=send(ids), ids_host=ids, weight=send(clean[ids], torch.float32),
                     norm=send(norm, torch.float32))
        if pam:
            rng = np.random.default_rng([t.seed, self.epoch, 1, self.world.rank])
            partner, lam, trained = pair_plan(
                self.labels[ids], clean[ids], NUM_CLASSES, cfg.pam.alpha, cfg.pam.beta, rng
            )
            plan.partner, plan.lam, plan.weight = send(partner), send(lam), send(trained, torch.float32)
        return plan

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.autocast_dtype)

    def _train_epoch(self, model: torch.nn.Module, plan: _Plan, stage: str) -> float:
        """One epoch of steps; returns the mean loss over the trained samples (one host sync)."""
        t = self.cfg.train
        observe = stage == Stage.SS and self.cfg.modules.ssm
        k = self.cfg.experts
        generator = torch.Generator(device=self.device)
        generator.manual_seed(_seed(t.seed, self.epoch, 2, self.world.rank))
        totals = torch.zeros(2, device=self.device)  # weighted CE sum, weight sum
        model.train()
        for step in range(self.steps):
            if step == self.steps // 2:
                _faults.kill_point("mid_epoch", self.epoch + 1)
            ids = plan.ids[step]
            x = augment(self.train_images.take(plan.ids_host[step], ids), generator, self.padding,
                        channels_last=self.channels_last)
            y = self.labels_device[ids]
            if plan.partner is not None:
                partner = plan.partner[step]
                x, y = mixup(x, partner, plan.lam[step]), y[partner]
            weight = plan.weight[step]
            with self._autocast():
                logits = model(x)
            # Mean over experts of the CE, averaged over the global batch's samples that count.
            ce = F.cross_entropy(logits.float().flatten(0, 1), y.repeat(k), reduction="none").view(k, -1).mean(0)
            weighted, count = (ce * weight).sum(), weight.sum()
            loss = weighted / plan.norm[step]
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is None:
                loss.backward()
                self.optimizer.step()
            else:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            self.scheduler.step()
            totals += torch.stack([weighted.detach(), count])
            if observe:
                self.selector.observe(ids, logits, y)
        if self.world.distributed:
            dist.all_reduce(totals)
        return (totals[0] / totals[1].clamp(min=1)).item()

    @torch.no_grad()
    def _predict_test(self) -> np.ndarray:
        """Predicted classes of the whole test split; ranks share the work and gather the result."""
        n = len(self.data.test.labels)
        share = -(-n // self.world.size)
        start, stop = min(n, self.world.rank * share), min(n, (self.world.rank + 1) * share)
        self.model.eval()
        predictions = [torch.empty(0, dtype=torch.long, device=self.device)]
        for a in range(start, stop, self.cfg.train.eval_batch_size):
            b = min(stop, a + self.cfg.train.eval_batch_size)
            x = normalize(self.test_images.range(a, b), channels_last=self.channels_last)
            with self._autocast():
                logits = self.model(x)
            predictions.append(expert_probabilities(logits).argmax(dim=1))
        local = torch.cat(predictions)
        if self.world.distributed:
            padded = torch.full((share,), -1, dtype=torch.long, device=self.device)
            padded[: local.numel()] = local
            gathered = [torch.empty_like(padded) for _ in range(self.world.size)]
            dist.all_gather(gathered, padded)
            local = torch.cat(gathered)[:n]
        return local.cpu().numpy()

    # ---- outputs ---------------------------------------------------------------------------
    def _aux_selection(self, clean: np.ndarray) -> dict | None:
        if self.data.aux_train is None:
            return None
        return selection_metrics(clean[self.n_target :], self.data.aux_train.labels, self.data.aux_true_labels)

    def _record(self, stage: str, loss: float, clean: np.ndarray, img_per_s: float) -> dict:
        selection = self._aux_selection(clean)
        record = {
            "epoch": self.epoch,
            "stage": Stage(stage).value,
            "loss": loss,
            "clean_share": selection["clean_share"] if selection else None,
            **{key: self.last_eval[key] for key in METRICS},
            "img_per_s": img_per_s,
        }
        if selection and "precision" in selection:
            record["selection_precision"] = selection["precision"]
            record["selection_recall"] = selection["recall"]
            record["aux_base_rate"] = selection["aux_base_rate"]
        return record

    def _progress_line(self, r: dict) -> str:
        share = "-" if r["clean_share"] is None else f"{r['clean_share']:.1%}"
        return (
            f"epoch {r['epoch']}/{self.cfg.train.epochs} {r['stage']}  loss {r['loss']:.4f}  clean aux {share}  "
            f"acc {r['accuracy']:.2%}  macro-F1 {r['macro_f1']:.2%}  {r['img_per_s']:.0f} img/s"
        )

    def summary(self) -> dict:
        """The content of metrics.json: the final epoch's figures, the best epoch, the history."""
        final = self.history[-1]
        best = max(self.history, key=lambda r: r["accuracy"])  # first of equals
        out = {key: final[key] for key in METRICS}
        out.update(
            epochs_done=self.epoch,
            epochs=self.cfg.train.epochs,
            clean_share=final["clean_share"],
            best={**{key: best[key] for key in ("epoch", *METRICS)}, "selected_on": "test"},
            per_class=self.last_eval["per_class"],
            confusion=self.last_eval["confusion"],
        )
        if self.data.aux_train is not None:
            out["selection"] = self._aux_selection(self.selector.clean.cpu().numpy())
        out["history"] = self.history
        return out

    def _write_selection(self, clean: np.ndarray) -> None:
        splits = [("target", self.data.target_train)]
        if self.data.aux_train is not None:
            splits.append(("aux", self.data.aux_train))
        paths = [path for _, split in splits for path in split.paths]
        sources = np.repeat([source for source, _ in splits], [len(split.labels) for _, split in splits])
        rows = io.StringIO()
        writer = csv.writer(rows, lineterminator="\n")
        writer.writerow(["path", "source", "label", "clean"])
        writer.writerows(zip(paths, sources, np.array(CLASSES)[self.labels], clean.astype(int)))
        atomic_write_text(self.run_dir / SELECTION_FILE, rows.getvalue())


def fit(cfg, run_dir, *, data=None, report=None, resume: bool = False, log: Callable[[str], None] = print) -> dict:
    """Train one configuration; see ARCHITECTURE.md ("engine -> orchestration") for the contract.

    Writes ``run_dir/metrics.json``, ``run_dir/selection.csv`` and ``run_dir/checkpoints/``.
    After each epoch's checkpoint, calls ``report(metrics, checkpoint_dir)``; under
    torch.distributed every rank calls it (Ray Train's report is a barrier over all workers) and
    only rank 0 passes the checkpoint directory (the others pass None). Returns the content of
    metrics.json.
    """
    try:
        return Trainer(cfg, run_dir, data=data, log=log).run(report=report, resume=resume)
    except torch.OutOfMemoryError as exc:
        raise TrainingOutOfMemory(cfg) from exc
