"""How a run fails in ways the user can act on: a diverged loss, a device out of memory."""

from __future__ import annotations

from sspa_ray.config import Config


class TrainingDiverged(RuntimeError):
    """The epoch's loss was NaN or infinite."""

    def __init__(self, epoch: int, loss: float):
        self.epoch, self.loss = epoch, loss
        super().__init__(f"training diverged in epoch {epoch}: loss {loss}; try a lower train.lr")


class TrainingOutOfMemory(RuntimeError):
    """The device ran out of memory; the message says which batch size and what to try."""

    def __init__(self, cfg: Config):
        t = cfg.train
        super().__init__(
            f"out of memory at train.batch_size={t.batch_size} (train.eval_batch_size={t.eval_batch_size}, "
            f"data.image_size={cfg.data.image_size}): lower train.batch_size, set train.precision=bf16, "
            "set train.data_on_device=false, or give each trial more of the GPU (--gpus-per-trial)"
        )
