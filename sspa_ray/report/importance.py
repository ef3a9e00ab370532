"""Optuna's parameter importance of a tune sweep, for the table notes.

The completed configurations (seed means) become the trials of an in-memory Optuna study, each key
with the range it was seen over, and ``optuna.importance.get_param_importances`` with PED-ANOVA (no scikit-learn needed) ranks the
keys by how much of the metric's variance they explain. Works for any search, not only Optuna's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sspa_ray.report.aggregate import Group

MIN_CONFIGURATIONS = 3   # the importance needs a few points to split on
# PED-ANOVA asks which keys the best configurations share: the best TARGET_QUANTILE of them against all.
TARGET_QUANTILE = 0.1


def importance_note(groups: Sequence[Group], keys: Sequence[str], metric: str, mode: str) -> str | None:
    import optuna

    done = [g for g in groups if g.stats[metric].n]
    keys = [k for k in keys if len({repr(g.config.get(k)) for g in done}) > 1]
    if len(done) < MIN_CONFIGURATIONS or not keys:
        return None
    distributions = {}
    for key in keys:
        values = [g.config.get(key) for g in done]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            distributions[key] = optuna.distributions.FloatDistribution(float(min(values)), float(max(values)))
        else:
            distributions[key] = optuna.distributions.CategoricalDistribution(sorted({repr(v) for v in values}))
    values = sorted((g.stats[metric].mean for g in done), reverse=mode == "max")
    if values[math.ceil(TARGET_QUANTILE * len(values)) - 1] == values[-1]:
        # Optuna would warn "Target and region quantiles select the same set of trials" and rank
        # every key 0: the best tenth ties with the worst, so nothing sets the best apart.
        return (f"Parameter importance for {metric}: none; the best {TARGET_QUANTILE:.0%} of the {len(done)} "
                f"configurations are no better than the worst ({values[-1]:.4g}), so no key sets them apart.")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for g in done:
        params = {k: (float(g.config[k]) if isinstance(d, optuna.distributions.FloatDistribution) else repr(g.config.get(k)))
                  for k, d in distributions.items()}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=g.stats[metric].mean))
    ranked = optuna.importance.get_param_importances(study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(target_quantile=TARGET_QUANTILE))
    shown = ", ".join(f"{k} {v:.2f}" for k, v in ranked.items())
    return f"Parameter importance for {metric} (Optuna's PED-ANOVA over {len(done)} configurations): {shown}."
