"""The ablation presets of `sspa-ray ablate --preset NAME` (paper Tables 3-9), one YAML file each.

This folder sits at the top of the repository, where users look for it, and installs as the package
``sspa_ray.presets`` (``package-dir`` in pyproject.toml); ``sspa_ray.specs.presets`` finds the
files through ``importlib.resources``, so a checkout (editable install) and a wheel read them alike.
"""
