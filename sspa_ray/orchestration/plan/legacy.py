"""Plans pickled by the version that had one class for every kind of experiment."""

from __future__ import annotations

from typing import Any

from sspa_ray.orchestration.plan.ablation import AblationPlan
from sspa_ray.orchestration.plan.search import SearchPlan
from sspa_ray.orchestration.plan.suite import SuitePlan
from sspa_ray.outputs import Kind


def upgraded_state(state: dict[str, Any]) -> dict[str, Any]:
    """The attributes of a plan pickled by the version with one class for every kind, with the class
    its kind has now: `kind` and a `space`, `suite` or `spec` of which only one was set."""
    state = dict(state)
    kind, suite = state.pop("kind"), state.pop("suite", None)
    if kind == Kind.TUNE:
        state["__class__"] = SearchPlan
    elif suite is not None:
        state.update({"__class__": SuitePlan, "spec": suite})
    else:
        state["__class__"] = AblationPlan
    return state
