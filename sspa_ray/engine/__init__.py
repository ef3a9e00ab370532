"""The SSPA-JT engine: SSM, PAM, metrics, checkpoints and the two-stage loop. Never imports Ray."""

from sspa_ray.engine.loop import TrainingDiverged, TrainingOutOfMemory, fit

__all__ = ["TrainingDiverged", "TrainingOutOfMemory", "fit"]
