"""The global RNG state a checkpoint carries (torch, CUDA, NumPy, Python), and the per-epoch seeds.

The epoch's own draws (data order, pairing, augmentation) come from generators seeded with
``seed_of(train.seed, epoch, ...)``; the global state is saved only so that whatever else draws
from it (model init, dropout) resumes where it stopped. NumPy's keys are stored as an int64
tensor so that ``torch.load(weights_only=True)`` reads the checkpoint.
"""

from __future__ import annotations

import random
from typing import cast

import numpy as np
import torch


def seed_of(*words: int) -> int:
    """One 32-bit seed from a tuple of integers (e.g. train.seed, epoch, stream, rank)."""
    return int(np.random.SeedSequence(list(words)).generate_state(1)[0])


def rng_state() -> dict:
    # The legacy form, a tuple (numpy's stubs also allow the dict of legacy=False).
    kind, keys, pos, has_gauss, gauss = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "gauss": gauss},
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])
