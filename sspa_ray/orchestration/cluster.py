"""Starting or joining a Ray cluster, with safe dashboard defaults.

- Without ``--address`` a fresh local Ray starts and stops with the command, even when
  ``RAY_ADDRESS`` is set or a ``ray start`` cluster runs on the machine (Ray itself would join
  those); with ``--address auto`` or ``ray://HOST:PORT`` the driver joins an existing cluster.
- The local Ray listens on 127.0.0.1 only: with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` Ray takes
  the loopback address as the node's address (as it does on macOS), and its GCS, raylet, workers,
  agents and metrics endpoint bind that address instead of every interface. Ray reads the variable
  when it is imported, so :func:`isolate_local_ray` runs before the first Ray import.
- The local Ray's processes start in sessions of their own, so a closed terminal or a signal to
  the command's process group reaches the driver alone, which ends the run resumably; a reaper
  ends them if the driver is killed (``_own_session``).
- ``--dashboard`` serves the dashboard on 127.0.0.1. Ray 2.60 keeps token authentication on: the
  token is in ``~/.ray/auth_token`` (or ``$RAY_AUTH_TOKEN_PATH``) and API clients send it as
  ``Authorization: Bearer <token>``. Binding another address prints a loud warning, and binding one
  without authentication is refused: unauthenticated dashboards were mass-exploited (ShadowRay,
  CVE-2023-48022).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sspa_ray.errors import UserError
from sspa_ray.orchestration._own_session import Reaper, ray_processes_in_own_sessions

LOOPBACK = "127.0.0.1"
DASHBOARD_PORT = 8265
# The line a driver prints once it has joined a cluster; --submit waits for it in the job's log.
JOINED = "joined the Ray cluster"
# Ray treats a node without cluster support as a single machine whose address is the loopback one.
_LOOPBACK_NODE_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
_ADDRESS_ENV = "RAY_ADDRESS"


@dataclass(frozen=True)
class ClusterOptions:
    address: str | None = None          # None: start a local Ray
    dashboard: bool = False
    dashboard_host: str = LOOPBACK
    dashboard_port: int = DASHBOARD_PORT
    num_cpus: int | None = None         # local Ray only; None: every core

    def check(self, starts_ray: bool = True) -> ClusterOptions:
        """Validate before any Ray import: the address form and the dashboard's exposure, and, when
        this command will start a local Ray (not for --dry-run or --submit), the dashboard's port."""
        if self.address is not None:
            if self.address != "auto" and not self.address.startswith("ray://") and ":" not in self.address:
                raise UserError(f"--address {self.address!r} is invalid: give auto, ray://HOST:PORT or HOST:PORT")
            if self.dashboard_host != LOOPBACK:
                raise UserError("--dashboard-host applies to the local Ray only: set it where the cluster starts "
                                "(ray start --head --dashboard-host ...)")
        if self.exposed and os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
            raise UserError(f"refusing to serve the dashboard on {self.dashboard_host} with RAY_AUTH_MODE=disabled: "
                            "anyone who reaches it could run code (CVE-2023-48022); unset RAY_AUTH_MODE or use 127.0.0.1")
        if starts_ray and self.dashboard and self.address is None and not port_is_free(self.dashboard_host, self.dashboard_port):
            raise UserError(f"--dashboard-port {self.dashboard_port} is already in use on {self.dashboard_host} "
                            "(another Ray dashboard?): give a free one, e.g. "
                            f"--dashboard-port {free_port(self.dashboard_host)}")
        return self

    @property
    def exposed(self) -> bool:
        """True when the dashboard would listen beyond this machine."""
        try:
            return not ipaddress.ip_address(self.dashboard_host).is_loopback
        except ValueError:
            return self.dashboard_host != "localhost"


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free to Ray too
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def isolate_local_ray() -> None:
    """Make the next local Ray a private, loopback-only one; call before Ray is first imported."""
    os.environ.pop(_ADDRESS_ENV, None)
    for key, value in _LOOPBACK_NODE_ENV.items():
        os.environ.setdefault(key, value)


def token_path() -> Path:
    """Where Ray keeps the dashboard's sign-in token."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def exposure_warning(host: str, port: int) -> str:
    bar = "!" * 78
    return "\n".join([
        bar,
        f"WARNING: the Ray dashboard will listen on {host}:{port}, reachable from other machines.",
        "Exposed Ray dashboards and Jobs APIs let anyone run code on the cluster; unauthenticated ones",
        "were mass-exploited (ShadowRay, CVE-2023-48022). Token authentication stays on; keep the token",
        f"in {token_path()} secret, firewall port {port}, or prefer an SSH tunnel:",
        f"    ssh -L {port}:127.0.0.1:{port} THIS_HOST   and keep --dashboard-host at 127.0.0.1.",
        bar,
    ])


# Ray starts one idle worker process per CPU for the driver, but trials are actors, which start
# workers of their own: the idle ones cost memory and about half a second of CPU each, unused.
LOCAL_RAY_CONFIG = {"prestart_worker_first_driver": False}


@contextmanager
def connect(options: ClusterOptions, log: Callable[[str], None] = print) -> Iterator[None]:
    """Start or join Ray for the experiment; shut it down afterwards if this call started it.

    A Ray session that is already initialised in this process (a notebook, a test) is used as is.
    """
    # Ray 2.60 reads this name (not RAY_DISABLE_USAGE_STATS); unset, a dashboard reports usage to usage-stats.ray.io.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        yield
        return
    # Trials write their output to their own train.log; the terminal shows the progress table.
    groups: list[int] = []  # the local Ray's process groups
    if options.address:
        context = ray.init(address=options.address, log_to_driver=False)
        nodes = [node for node in ray.nodes() if node["Alive"]]
        total = ray.cluster_resources()
        log(f"{JOINED} at {context.address_info['gcs_address']}: {len(nodes)} nodes, "
            f"{total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs")
    else:
        if options.dashboard and options.exposed:
            print(exposure_warning(options.dashboard_host, options.dashboard_port), file=sys.stderr, flush=True)
        isolate_local_ray()
        # "local": a new Ray even where RAY_ADDRESS or /tmp/ray/ray_current_cluster name another one.
        with ray_processes_in_own_sessions() as groups:
            context = ray.init(address="local", num_cpus=options.num_cpus, include_dashboard=options.dashboard,
                               dashboard_host=options.dashboard_host, dashboard_port=options.dashboard_port,
                               log_to_driver=False, _system_config=LOCAL_RAY_CONFIG)
    if options.dashboard and context.dashboard_url:
        log(f"Ray dashboard: http://{context.dashboard_url}")
        log(f"  sign in with the token in {token_path()} (API clients: 'Authorization: Bearer <token>')")
    reaper = Reaper(groups)
    try:
        yield
    finally:
        ray.shutdown()
        reaper.release()

