"""Shared test set-up: an isolated cache, no usage stats, single-threaded torch."""

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

# Set before anything imports sspa_ray or ray, so every test and every subprocess it starts
# uses a private cache and never phones home.
os.environ.setdefault("SSPA_CACHE_DIR", tempfile.mkdtemp(prefix="sspa-test-cache-"))
os.environ["RAY_DISABLE_USAGE_STATS"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray (2 CPUs, no dashboard) for the module's tests, unless one is already running."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def mount_tmpfs(disk: Path, size: str) -> None:
    """Mount a real tmpfs of `size` at `disk` (needs the right to mount, as CI's root has), or skip."""
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
