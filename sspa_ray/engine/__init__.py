"""The SSPA-JT engine: SSM, PAM, metrics, checkpoints and the two-stage loop. Never imports Ray.

``fit`` is loaded on first use: it brings torch (1.5 s of CPU), which a sweep's driver, importing
the trial code only to name it to Ray, never needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sspa_ray.engine.failures import TrainingDiverged, TrainingOutOfMemory

if TYPE_CHECKING:
    from sspa_ray.engine.setup import fit

__all__ = ["TrainingDiverged", "TrainingOutOfMemory", "fit"]


def __getattr__(name: str) -> Any:
    if name == "fit":
        from sspa_ray.engine.setup import fit

        return fit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
