"""Where the training and test images live during a run: the device pick and the uint8 image store.

On CUDA with ``train.data_on_device`` (and room for it) the images are copied to the GPU once and
a batch is one gather there; otherwise each batch is gathered on the host (from the memory-mapped
cache) and sent over.
"""

from __future__ import annotations

import numpy as np
import torch

from sspa_ray.config import Config
from sspa_ray.errors import ConfigError

GIB = 2**30


def pick_device(cfg: Config) -> torch.device:
    """The device ``train.device`` asks for (``auto``: this process's CUDA device if any, else CPU)."""
    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is visible; set train.device=auto or cpu")
    if cfg.train.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


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


class DeviceImages:
    """uint8 NHWC images of one or more splits behind one index space, resident on the device or not."""

    def __init__(self, parts: list[np.ndarray], device: torch.device, resident: bool):
        self.parts = parts
        self.bounds = np.cumsum([0] + [len(p) for p in parts])
        self.device = device
        self.resident = None
        if resident:
            self.resident = torch.empty((int(self.bounds[-1]), *parts[0].shape[1:]), dtype=torch.uint8, device=device)
            # bounds holds one more entry than parts (the end): each part pairs with its start.
            for part, start in zip(parts, self.bounds, strict=False):
                for a in range(0, len(part), 4096):
                    chunk = np.array(part[a : a + 4096])
                    self.resident[start + a : start + a + len(chunk)].copy_(torch.from_numpy(chunk))

    def _send(self, batch: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(batch)
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def take(self, ids_host: np.ndarray, ids_device: torch.Tensor) -> torch.Tensor:
        """The images of these ids (the host copy picks from the splits, the device copy indexes)."""
        if self.resident is not None:
            return self.resident[ids_device]
        out = np.empty((len(ids_host), *self.parts[0].shape[1:]), dtype=np.uint8)
        part_of = np.searchsorted(self.bounds, ids_host, side="right") - 1
        for i, part in enumerate(self.parts):
            mine = part_of == i
            out[mine] = part[ids_host[mine] - self.bounds[i]]
        return self._send(out)

    def range(self, start: int, stop: int) -> torch.Tensor:
        """Images start..stop of the first split (the test split is evaluated in order)."""
        if self.resident is not None:
            return self.resident[start:stop]
        return self._send(np.array(self.parts[0][start:stop]))
