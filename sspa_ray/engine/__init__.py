"""The SSPA-JT engine: SSM, PAM, metrics, checkpoints and the two-stage loop. Never imports Ray."""

from sspa_ray.engine.loop import TrainingDiverged, fit

__all__ = ["TrainingDiverged", "fit"]
