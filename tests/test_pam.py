"""PAM: balance_counts is the exact integer optimum of equation 8; the pairing plan and Mixup."""

import itertools

import numpy as np
import pytest
import torch

from sspa_ray.engine.pam import balance_counts, mixup, pair_plan
from sspa_ray.engine.pam_reference import balance_counts_slsqp


def brute_force_variance(h, n):
    """The smallest Var(h + s) over every integer s with sum n and s_i = 0 where h_i = 0."""
    h = np.asarray(h)
    allowed = np.flatnonzero(h)
    best = np.inf
    for part in itertools.product(range(n + 1), repeat=len(allowed)):
        if sum(part) == n:
            s = np.zeros_like(h)
            s[allowed] = part
            best = min(best, np.var(h + s))
    return best


def assert_feasible(h, n, s):
    h, s = np.asarray(h), np.asarray(s)
    assert s.shape == h.shape and np.issubdtype(s.dtype, np.integer)
    assert s.sum() == n
    assert (s >= 0).all()
    assert (s[h == 0] == 0).all()


def random_cases(count, seed=0):
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        c = int(rng.integers(1, 6))
        h = rng.integers(0, 7, c) * (rng.random(c) < 0.7)  # empty classes are common
        n = int(rng.integers(0, 9))
        if n == 0 or h.any():
            cases.append((h, n))
    return cases


EDGE_CASES = [
    (np.array([3, 1, 4, 1, 5, 9, 2]), 0),  # n_noisy = 0
    (np.array([0, 0, 5, 0, 0, 0, 0]), 6),  # one class present
    (np.array([0, 2, 0, 7, 0, 0, 1]), 5),  # empty classes
    (np.array([4, 4, 4]), 4),  # ties everywhere
    (np.array([0, 0, 0]), 0),  # nothing at all
    (np.array([1]), 3),
]


@pytest.mark.parametrize("h,n", EDGE_CASES)
def test_balance_counts_is_the_exact_optimum_on_edge_cases(h, n):
    s = balance_counts(h, n)
    assert_feasible(h, n, s)
    assert np.var(h + s) == pytest.approx(brute_force_variance(h, n), abs=1e-12)


def test_balance_counts_is_the_exact_optimum_on_random_batches():
    for h, n in random_cases(400):
        s = balance_counts(h, n)
        assert_feasible(h, n, s)
        assert np.var(h + s) == pytest.approx(brute_force_variance(h, n), abs=1e-12), (h, n, s)


def test_balance_counts_fills_the_tail_classes_first():
    # A batch of 128 with 7 classes: the noisy slots go to the rare classes.
    h = np.array([30, 5, 2, 0, 40, 10, 3])
    s = balance_counts(h, 38)
    assert s.tolist() == [0, 9, 13, 0, 0, 4, 12]
    assert (h + s)[[1, 2, 5, 6]].tolist() == [14, 15, 14, 15]


def test_balance_counts_rejects_impossible_input():
    with pytest.raises(ValueError, match="no clean sample"):
        balance_counts([0, 0, 0], 2)
    with pytest.raises(ValueError):
        balance_counts([1, -1], 1)
    with pytest.raises(ValueError):
        balance_counts([1, 2], -1)


def test_slsqp_reference_keeps_the_sum():
    for h, n in EDGE_CASES + random_cases(60, seed=1):
        s = balance_counts_slsqp(h, n)
        assert_feasible(h, n, s)
        assert np.var(h + s) >= brute_force_variance(h, n) - 1e-12


def test_slsqp_reference_is_close_on_a_realistic_batch():
    rng = np.random.default_rng(2)
    for _ in range(20):
        h = rng.multinomial(80, [0.06, 0.06, 0.03, 0.38, 0.2, 0.16, 0.11])
        n = 48
        exact, ref = balance_counts(h, n), balance_counts_slsqp(h, n)
        assert ref.sum() == n
        assert np.var(h + ref) <= np.var(h + exact) + 0.5


def test_pair_plan_follows_the_counts_and_pairs_within_the_batch():
    rng = np.random.default_rng(0)
    steps, batch, classes = 40, 32, 7
    labels = rng.integers(0, classes, (steps, batch))
    clean = rng.random((steps, batch)) < 0.6
    clean[3] = False  # a batch without clean samples
    clean[4] = True  # a batch without noisy samples
    partner, lam, trained = pair_plan(labels, clean, classes, 5.0, 1.0, np.random.default_rng(1))
    for row in range(steps):
        c, p = clean[row], partner[row]
        noisy = np.flatnonzero(~c)
        if not c.any():
            assert not trained[row].any() and (p == np.arange(batch)).all() and (lam[row] == 1).all()
            continue
        assert trained[row].all()
        assert (p[c] == np.flatnonzero(c)).all() and (lam[row][c] == 1).all()
        assert c[p[noisy]].all()  # every noisy sample is paired with a clean one of its batch
        h = np.bincount(labels[row][c], minlength=classes)
        drawn = np.bincount(labels[row][p[noisy]], minlength=classes)
        assert drawn.tolist() == balance_counts(h, len(noisy)).tolist()
        assert ((lam[row][noisy] > 0) & (lam[row][noisy] < 1)).all()


def test_pair_plan_is_reproducible_and_lambda_follows_beta():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, (200, 64))
    clean = rng.random((200, 64)) < 0.5
    a = pair_plan(labels, clean, 7, 5.0, 1.0, np.random.default_rng(3))
    b = pair_plan(labels, clean, 7, 5.0, 1.0, np.random.default_rng(3))
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    lam = a[1][~clean]
    assert lam.mean() == pytest.approx(5 / 6, abs=0.01)  # mean of Beta(5, 1)


def test_mixup_mixes_only_the_paired_positions():
    x = torch.arange(4 * 3 * 2 * 2, dtype=torch.float32).view(4, 3, 2, 2)
    partner = torch.tensor([0, 0, 2, 2])
    lam = torch.tensor([1.0, 0.75, 1.0, 0.25])
    out = mixup(x, partner, lam)
    assert torch.equal(out[0], x[0]) and torch.equal(out[2], x[2])
    assert torch.allclose(out[1], 0.75 * x[0] + 0.25 * x[1])
    assert torch.allclose(out[3], 0.25 * x[2] + 0.75 * x[3])
