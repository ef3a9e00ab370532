"""The paper's PAM solver (scipy SLSQP on the relaxation of equation 8), the reference that tests and
benchmarks compare ``pam.balance_counts`` with. Training never imports this file (nor scipy.optimize).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from sspa_ray.engine.pam import check_histogram


def balance_counts_slsqp(h, n_noisy: int) -> np.ndarray:
    """The paper's solver: SLSQP on the continuous relaxation, then largest-remainder rounding."""
    h, n = check_histogram(h, n_noisy)
    allowed = h > 0
    if n == 0:
        return np.zeros_like(h)
    hf = h.astype(np.float64)
    # As in the paper: SLSQP with numerical gradients, bounds 0 <= s_i <= n (0 for empty classes).
    result = minimize(
        lambda s: np.var(hf + s),
        np.where(allowed, n / allowed.sum(), 0.0),
        method="SLSQP",
        bounds=[(0.0, float(n) if a else 0.0) for a in allowed],
        constraints=[{"type": "eq", "fun": lambda s: s.sum() - n}],
    )
    x = np.clip(result.x, 0.0, None) * allowed
    x *= n / x.sum()
    # Largest remainder: floor everything, then hand the missing units to the largest fractions.
    base = np.floor(x).astype(np.int64)
    missing = n - int(base.sum())
    fraction = np.where(allowed, x - base, -1.0)
    base[np.argsort(-fraction, kind="stable")[:missing]] += 1
    return base
