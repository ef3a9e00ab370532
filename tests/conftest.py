"""Shared test set-up: an isolated cache, no usage stats, single-threaded torch."""

import contextlib
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

# Set before anything imports sspa_ray or ray, so every test and every subprocess it starts
# uses a private cache and never phones home.
os.environ.setdefault("SSPA_CACHE_DIR", tempfile.mkdtemp(prefix="sspa-test-cache-"))
os.environ["RAY_DISABLE_USAGE_STATS"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def local_ray():
    """The session's local Ray (2 CPUs, no dashboard), started by the first test that needs it and
    shared by every module after it: each start and stop cost about 4.5 s here."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def pytest_collection_modifyitems(items):
    # A test that replaces the session's Ray with one of its own runs after every test sharing it.
    items.sort(key=lambda item: item.get_closest_marker("own_ray") is not None)


def mount_tmpfs(disk: Path, size: str) -> None:
    """Mount a real tmpfs of `size` at `disk` (needs the right to mount, as CI's root has), or skip."""
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")


def processes() -> dict[int, str]:
    """pid -> command line, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return found


def process_tree(root: int) -> set[int]:
    """`root` and all its descendants, from the parent ids in /proc/PID/stat."""
    parents = {}
    for pid in processes():
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[pid] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    tree, grew = {root}, True
    while grew:
        new = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= new
        grew = bool(new)
    return tree


def still_running(pids: set[int], wait_s: float = 30) -> dict[int, str]:
    """The processes of `pids` that run after up to `wait_s` seconds (zombies are not running)."""
    deadline = time.monotonic() + wait_s
    while True:
        running = {}
        for pid in pids:
            with contextlib.suppress(OSError, IndexError):
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    running[pid] = (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                                    .decode(errors="replace"))
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.5)
