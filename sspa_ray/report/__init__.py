"""Tables (Markdown, CSV, LaTeX), statistics and plots, from an experiment's results.parquet."""

from sspa_ray.report.render import render_experiment

__all__ = ["render_experiment"]
