"""Paired Augmentation Module (paper section 3.3, equation 8 and Algorithm 2).

A minibatch splits into clean samples B_C (class histogram h) and noisy samples B_N. Each noisy
sample is replaced by a Mixup of itself with a clean sample drawn (with replacement) from B_C, so
that the batch's class histogram becomes h + s, where s minimises the variance of h + s subject
to sum(s) = |B_N| and s_i = 0 wherever h_i = 0.

Equation 8 is separable and convex over integers (minimising the variance at a fixed total is
minimising sum (h_i + s_i)^2), so greedily adding one unit to the smallest allowed class is
optimal: the exact integer optimum is "water-filling" to a level L, with the remaining
r < (#classes at L) units going one each to classes at level L. ``balance_counts`` computes that
level in closed form from the sorted histogram, vectorised over classes. Ties (several classes at
level L) go to the classes with fewer clean samples in the batch, then to the lower class index.

The paper's own solver (scipy SLSQP on the relaxation) is kept as the reference for tests and
benchmarks in ``pam_reference.py``, so that training never imports scipy.optimize.
"""

from __future__ import annotations

import numpy as np
import torch


def check_histogram(h, n_noisy) -> tuple[np.ndarray, int]:
    h = np.asarray(h)
    if h.ndim != 1 or h.dtype.kind not in "iu" or (h.size and h.min() < 0):
        raise ValueError(f"h must be a 1-d sequence of non-negative integers, got {h!r}")
    n = int(n_noisy)
    if n < 0:
        raise ValueError(f"n_noisy must be >= 0, got {n}")
    if n > 0 and not h.any():
        raise ValueError("n_noisy > 0 but h has no clean sample to draw from")
    return h.astype(np.int64, copy=False), n


def balance_counts(h, n_noisy: int) -> np.ndarray:
    """Integer counts s (length C) minimising Var(h + s), sum(s) = n_noisy, s_i = 0 where h_i = 0."""
    h, n = check_histogram(h, n_noisy)
    # Non-empty classes in ascending order of h (stable: lower index first on ties).
    classes = np.flatnonzero(h)
    classes = classes[h[classes].argsort(kind="stable")]
    hs = h[classes]
    prefix = hs.cumsum()
    # cost[j] = units needed to raise the j+1 smallest classes to the height of the (j+1)-th;
    # it is non-decreasing, so the classes that get water are a prefix of length m.
    cost = hs * np.arange(1, hs.size + 1) - prefix
    m = int(np.searchsorted(cost, n, side="right"))
    s = np.zeros_like(h)
    if m == 0:  # n == 0 and no class: nothing to do
        return s
    level, remainder = divmod(n + int(prefix[m - 1]), m)
    s[classes[:m]] = level - hs[:m]
    s[classes[:remainder]] += 1
    return s


def pair_plan(
    labels: np.ndarray, clean: np.ndarray, num_classes: int, alpha: float, beta: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plan PAM for every minibatch of an epoch at once, on the host.

    `labels` and `clean` are [S, B] (S minibatches of B samples). Returns, all [S, B]:

    - ``partner``: for a noisy position, the position (in the same row) of the clean sample x_S
      it is mixed with; for every other position, itself;
    - ``lam``: the Mixup weight of x_S, drawn from Beta(alpha, beta); 1 where nothing is mixed;
    - ``trained``: False only for the noisy samples of a batch without clean samples.

    The mixed sample at position j is lam_j * x[partner_j] + (1 - lam_j) * x[j] with label
    labels[partner_j].
    """
    labels = np.asarray(labels, dtype=np.int64)
    clean = np.asarray(clean, dtype=bool)
    steps, batch = labels.shape
    rows = np.repeat(np.arange(steps), batch)
    h = np.bincount((rows * num_classes + labels.ravel())[clean.ravel()], minlength=steps * num_classes)
    h = h.reshape(steps, num_classes)
    has_clean = h.sum(axis=1) > 0
    n_noisy = np.where(has_clean, batch - clean.sum(axis=1), 0)
    # One small solve per minibatch: a loop over batches (not samples), once per epoch.
    s = np.stack([balance_counts(h_row, n_row) for h_row, n_row in zip(h, n_noisy, strict=True)])

    # Sort every position by (row, class), noisy positions after the clean ones of their row, so
    # the clean samples of (row r, class c) are a contiguous block starting at start[r, c].
    key = rows * (num_classes + 1) + np.where(clean.ravel(), labels.ravel(), num_classes)
    by_key = np.argsort(key, kind="stable")
    key_counts = np.bincount(key, minlength=steps * (num_classes + 1))
    start = (np.cumsum(key_counts) - key_counts).reshape(steps, num_classes + 1)[:, :num_classes]

    # One draw per unit of s: its row and class, then a uniform clean member of that block.
    cell = np.repeat(np.arange(steps * num_classes), s.ravel())
    draw_row, draw_class = np.divmod(cell, num_classes)
    member = (rng.random(cell.size) * h[draw_row, draw_class]).astype(np.int64)
    drawn_col = by_key[start[draw_row, draw_class] + member] % batch
    # Pair the draws with the row's noisy samples in random order.
    drawn_col = drawn_col[np.lexsort((rng.random(cell.size), draw_row))]

    partner = np.tile(np.arange(batch), (steps, 1))
    lam = np.ones((steps, batch), dtype=np.float32)
    mixed = ~clean & has_clean[:, None]
    partner[mixed] = drawn_col  # boolean indexing is row-major, like the sorted draws
    lam[mixed] = rng.beta(alpha, beta, size=cell.size)
    return partner, lam, trained_mask(clean)


def trained_mask(clean: np.ndarray) -> np.ndarray:
    """[..., B] -> which samples of each PA minibatch get a loss: all of them, except the noisy
    samples of a minibatch with no clean sample to pair them with."""
    return clean | clean.any(axis=-1, keepdims=True)


def mixup(x: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """x~_j = lam_j * x[partner_j] + (1 - lam_j) * x_j, batched (exactly x_j where lam_j = 1)."""
    return torch.lerp(x, x[partner], lam.view(-1, *([1] * (x.dim() - 1))).to(x.dtype))
