"""Search-space and ablation YAML: parsing and validation (pure Python, no Ray)."""

from sspa_ray.specs.ablation import AblationSpec, TrialSpec, load_ablation
from sspa_ray.specs.presets import preset_names, resolve_preset

__all__ = ["AblationSpec", "TrialSpec", "load_ablation", "preset_names", "resolve_preset"]
