"""Tests of a configuration against the baseline row over seeds, and their correction per table.

- :func:`paired_p`: a paired t-test over matched seeds. Trials with the same seed share the data
  split, the aux subset and the initialisation, so pairing removes that shared noise.
- :func:`welch_p`: Welch's unequal-variance t-test, for rows whose seeds do not match.
- :func:`holm`: Holm's step-down adjustment of the p-values of one table (family-wise error rate).
- :func:`mean_ci`: the 95% confidence interval of a mean (Student's t), shown where n >= 3.
- :func:`p_against_baseline`: the choice of test for a row against the baseline: paired where the seeds match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sspa_ray.report.aggregate import finite_number

# scipy.stats is imported where a test or an interval is computed: loading it takes about 0.9 s of
# CPU, which every experiment's driver paid at its end even when one seed left nothing to test.

SIGNIFICANCE_LEVEL = 0.05
CONFIDENCE = 0.95
CI_MIN_N = 3


def paired_p(values: Sequence[float], baseline: Sequence[float]) -> float | None:
    """Two-sided p-value of a paired t-test of two sequences aligned by seed.

    None with fewer than 2 pairs, or when the test is undefined (all differences equal)."""
    if len(values) != len(baseline) or len(values) < 2:
        return None
    from scipy import stats

    return finite_number(float(stats.ttest_rel(values, baseline).pvalue))


def welch_p(values: Sequence[float], baseline: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's unequal-variance t-test.

    None when either side has fewer than two values, or when the test is undefined (both sides
    constant and equal), so that a single seed never claims significance.
    """
    if len(values) < 2 or len(baseline) < 2:
        return None
    from scipy import stats

    return finite_number(float(stats.ttest_ind(values, baseline, equal_var=False).pvalue))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values (None stays None); the family is the p-values given."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(tested)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def mean_ci(values: Sequence[float], bounds: tuple[float, float] = (0.0, 1.0)) -> tuple[float, float] | None:
    """The CONFIDENCE interval of the mean (Student's t, n - 1 degrees of freedom); None below CI_MIN_N.

    Clipped to `bounds`, the range the metric can take (the macro scores are shares): with three
    seeds t = 4.30, so a spread-out row near 100% would otherwise show an interval beyond it.
    """
    n = len(values)
    if n < CI_MIN_N:
        return None
    from scipy import stats

    mean, sem = float(np.mean(values)), float(np.std(values, ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 1)) * sem
    return max(mean - half, bounds[0]), min(mean + half, bounds[1])


def significant(p: float | None) -> bool:
    return p is not None and p < SIGNIFICANCE_LEVEL


def p_against_baseline(stat, baseline) -> tuple[float | None, str]:
    """The p-value of `stat` against `baseline` and the test used: paired by seed where both rows
    ran the same seeds (each once), Welch's t-test otherwise."""
    if len(set(stat.seeds)) == stat.n and sorted(map(str, stat.seeds)) == sorted(map(str, baseline.seeds)):
        by_seed = dict(zip(stat.seeds, stat.values, strict=True))
        return paired_p([by_seed[s] for s in baseline.seeds], list(baseline.values)), "paired"
    return welch_p(stat.values, baseline.values), "welch"
