"""Thin click commands: parse, validate, call into sspa_ray. Installed as ``sspa_ray.cli``."""
