"""balance_counts (exact water-filling) against the paper's SLSQP solver.

    python -m benchmarks.pam [--batches 2000]

Both solve equation 8 on the same random minibatch histograms; the ratio is measured side by
side in one run. It also counts how often plain rounding of SLSQP breaks sum(s) = n_noisy,
which is why the reference rounds by largest remainder.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import minimize

from sspa_ray.engine.pam import balance_counts
from sspa_ray.engine.pam_reference import balance_counts_slsqp


def random_batches(rng, count, batch, num_classes, clean_share=0.7):
    """Histograms of the clean part of `count` minibatches with long-tailed class priors."""
    prior = rng.dirichlet(np.full(num_classes, 0.6), size=count)
    n_clean = rng.binomial(batch, clean_share, size=count)
    h = np.stack([rng.multinomial(n, p) for n, p in zip(n_clean, prior, strict=True)])
    return h, batch - n_clean


def naive_rounding_breaks_sum(h, n):
    """The paper's relaxation with np.rint rounding: does sum(s) still equal n?"""
    allowed = h > 0
    x0 = np.where(allowed, n / allowed.sum(), 0.0)
    res = minimize(lambda s: np.var(h + s), x0, method="SLSQP",
                   bounds=[(0, n if a else 0) for a in allowed],
                   constraints=[{"type": "eq", "fun": lambda s: s.sum() - n}])
    return int(np.rint(res.x).sum()) != n


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'batch':>6} {'C':>4} {'SLSQP us':>10} {'exact us':>10} {'ratio':>8}")
    for batch, num_classes in [(128, 7), (256, 7), (128, 50), (512, 200)]:
        h, n = random_batches(rng, args.batches, batch, num_classes)
        reps = max(1, args.batches // 10)
        t_slsqp = timed(lambda h=h, n=n, reps=reps: [balance_counts_slsqp(h[i], n[i]) for i in range(reps)]) / reps
        t_exact = timed(lambda h=h, n=n: [balance_counts(h[i], n[i]) for i in range(args.batches)]) / args.batches
        print(f"{batch:>6} {num_classes:>4} {t_slsqp * 1e6:>10.1f} {t_exact * 1e6:>10.1f} {t_slsqp / t_exact:>7.0f}x")
    h, n = random_batches(rng, 300, 128, 7)
    broken = sum(naive_rounding_breaks_sum(h[i], n[i]) for i in range(len(n)) if h[i].any())
    print(f"np.rint rounding of SLSQP breaks sum(s) = n_noisy in {broken}/{len(n)} batches (batch 128, C=7)")


if __name__ == "__main__":
    main()
