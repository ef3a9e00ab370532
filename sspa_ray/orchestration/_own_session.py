"""The local Ray's processes in sessions of their own, and a reaper for when the driver is killed.

A closed terminal sends SIGHUP, and ``kill -TERM -PGID`` SIGTERM, to the whole foreground process
group. Ray blocks only SIGINT in the processes it starts, so those signals used to kill the GCS and
raylet while the driver was saving the experiment; the driver then hung 60 s and exited 1. Started
with ``setsid``, Ray's processes (GCS, raylet, dashboard, log monitor, and what the raylet forks:
workers, agents) get no signal meant for the command's group; only the driver does, and it ends
the run resumably (``stop.StopGuard``).

Ray's processes still end with the driver: Ray sets PR_SET_PDEATHSIG on those it starts. The
raylet's agents do not always follow their raylet (ray#52385: they log "Raylet is dead! Exiting"
and hang), so a small reaper, in a session of its own too, waits for the driver to go and, unless
the driver said it shut Ray down, kills every group started here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_DONE = b"done\n"
# The reaper waits for the driver's stdin pipe to close, gives Ray's own clean-up a moment, then
# SIGKILLs the groups, unless the driver wrote _DONE first.
_REAPER = f"""
import contextlib, os, signal, sys, time
said = sys.stdin.buffer.read()
if said != {_DONE!r}:
    time.sleep(3)
    for group in map(int, sys.argv[1:]):
        with contextlib.suppress(ProcessLookupError):  # a group that ended on its own
            os.killpg(group, signal.SIGKILL)
"""


@contextmanager
def ray_processes_in_own_sessions() -> Iterator[list[int]]:
    """Within the block, every process Ray starts gets a session; yields their group ids.

    Ray 2.60 starts every node process through ``ray._private.services.ConsolePopen``, a
    ``subprocess.Popen``. Without that class (another Ray version) nothing changes.
    """
    from ray._private import services

    groups: list[int] = []
    ray_popen = getattr(services, "ConsolePopen", None)
    if ray_popen is None or sys.platform == "win32":
        yield groups
        return

    class OwnSessionPopen(ray_popen):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("start_new_session", True)
            super().__init__(*args, **kwargs)
            groups.append(self.pid)  # a session leader leads its group: pgid == pid

    services.ConsolePopen = OwnSessionPopen
    try:
        yield groups
    finally:
        services.ConsolePopen = ray_popen


class Reaper:
    """Kills the given process groups if this process dies before :meth:`release`."""

    def __init__(self, groups: list[int]):
        self._process = None
        if groups and sys.platform != "win32":
            self._process = subprocess.Popen([sys.executable, "-c", _REAPER, *map(str, groups)],
                                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL, start_new_session=True)

    def release(self) -> None:
        """Ray was shut down: the reaper ends without killing anything."""
        if self._process is None:
            return
        try:
            self._process.stdin.write(_DONE)
            self._process.stdin.close()
            self._process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
        self._process = None
