"""The SSPA-JT engine: SSM, PAM, metrics, checkpoints and the two-stage loop. Never imports Ray."""

from sspa_ray.engine.failures import TrainingDiverged, TrainingOutOfMemory
from sspa_ray.engine.setup import fit

__all__ = ["TrainingDiverged", "TrainingOutOfMemory", "fit"]
