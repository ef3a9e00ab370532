"""Shared test set-up: an isolated cache, no usage stats, single-threaded torch."""

import os
import tempfile

# Set before anything imports sspa_ray or ray, so every test and every subprocess it starts
# uses a private cache and never phones home.
os.environ.setdefault("SSPA_CACHE_DIR", tempfile.mkdtemp(prefix="sspa-test-cache-"))
os.environ["RAY_DISABLE_USAGE_STATS"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
