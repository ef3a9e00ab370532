"""Welch's t-test of a configuration against the baseline row, over seeds."""

from __future__ import annotations

import math
from typing import Sequence

from scipy import stats

SIGNIFICANCE_LEVEL = 0.05


def welch_p(values: Sequence[float], baseline: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's unequal-variance t-test.

    None when either side has fewer than two values, or when the test is undefined (both sides
    constant and equal), so that a single seed never claims significance.
    """
    if len(values) < 2 or len(baseline) < 2:
        return None
    result = stats.ttest_ind(values, baseline, equal_var=False)
    p = float(result.pvalue)
    return p if math.isfinite(p) else None


def significant(p: float | None) -> bool:
    return p is not None and p < SIGNIFICANCE_LEVEL
