"""fit(): one run's setup, then the Trainer (loop.py).

The setup that can read datasets or train another model happens here, before the Trainer is built
(as Lightning sets up apart from its loop): the data, the built-in pretrained backbone
(pretrain.resolved) and the method's preparation (prepare_method). Building the Trainer trains
nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sspa_ray.config import Config
from sspa_ray.engine import pretrain
from sspa_ray.engine.failures import TrainingOutOfMemory
from sspa_ray.engine.loop import Trainer
from sspa_ray.engine.methods import prepare_method
from sspa_ray.engine.world import World


def fit(cfg: Config, run_dir, *, data=None, report=None, resume: bool = False, log: Callable[[str], None] = print) -> dict:
    """Train one configuration; see ARCHITECTURE.md ("engine -> orchestration") for the contract.

    Writes ``run_dir/metrics.json``, the method's files (SSPA-JT: ``selection.csv``) and
    ``run_dir/checkpoints/``. After each epoch's checkpoint, calls ``report(metrics, checkpoint_dir)``;
    under torch.distributed every rank calls it (Ray Train's report is a barrier over all workers)
    and only rank 0 passes the checkpoint directory (the others pass None). Returns the content of
    metrics.json.
    """
    is_main = World.current().rank == 0
    if data is None:
        from sspa_ray.data import load_joint_data

        data = load_joint_data(cfg, progress=is_main)
    model_cfg = pretrain.resolved(cfg)  # the built-in pretrained backbone, trained on first use
    prepared = prepare_method(cfg, data, model_cfg, progress=is_main)  # cached like the backbone
    try:
        trainer = Trainer(cfg, run_dir, data=data, model_cfg=model_cfg, prepared=prepared, log=log)
        return trainer.run(report=report, resume=resume)
    except torch.OutOfMemoryError as exc:
        raise TrainingOutOfMemory(cfg) from exc
