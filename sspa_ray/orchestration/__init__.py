"""The only Ray code of sspa-ray: trials, the Tuner, resume, the dashboard, results.parquet.

``plan`` and ``cluster`` import no Ray at module level, so the CLI validates everything before a
cluster starts; the other modules (``tuner.run_experiment`` is the entry point) import Ray.
"""
