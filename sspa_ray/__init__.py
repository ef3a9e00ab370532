"""sspa-ray: SSPA-JT joint training for facial expression recognition, swept and ablated on Ray.

Layers, from the bottom up: ``config`` and ``labels`` (the shared vocabulary), ``data``
(loaders, decode-once cache, synthetic benchmark), ``model`` (backbones and the MoE head),
``engine`` (SSM, PAM, the two-stage loop; no Ray), ``orchestration`` (the only Ray code) and
``report`` (tables, statistics, plots). ``cli`` is a thin click layer on top.
"""

__version__ = "0.1.0"
