"""``--submit``: the whole experiment as a Ray Job on a cluster (Ray's Job Submission API).

The job runs the same ``sspa-ray`` command on the head node with ``--address auto``, so its driver
(and the live table) lives on the cluster: it keeps running when the submitting client goes away,
and its output is on the dashboard's Jobs page and in ``ray job logs``.

Ray 2.60's token authentication: Ray's Job SDK sends ``Authorization: Bearer <token>`` when
``RAY_AUTH_MODE=token`` is set, with the token its loader finds (``$RAY_AUTH_TOKEN``, the file
``$RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``). Like ``ray.init`` with an explicit address, it
never sends a token to a cluster the user has not opted into, and neither does sspa-ray.
"""

from __future__ import annotations

import shlex
import time
from typing import Callable

from sspa_ray.errors import UserError
from sspa_ray.orchestration.plan import ExperimentPlan

ENTRYPOINT = "sspa-ray"
# Job metadata that names the experiment on the Jobs page.
METADATA_KEY = "sspa_ray.experiment"


def submit_experiment(address: str, argv: list[str], plan: ExperimentPlan,
                      log: Callable[[str], None] = print) -> str:
    """Submit `sspa-ray ARGV` as a Ray Job and print how to follow, stop and resume it; returns its id."""
    from ray.job_submission import JobSubmissionClient

    submission_id = f"sspa-ray-{plan.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    env = plan.env
    try:
        client = JobSubmissionClient(address)
        job_id = client.submit_job(entrypoint=shlex.join([ENTRYPOINT, *argv]), submission_id=submission_id,
                                   runtime_env={"env_vars": env} if env else None,
                                   metadata={METADATA_KEY: plan.name})
    except (ConnectionError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--submit: the Jobs API at {address} refused or did not answer ({first}); check --address, "
                        "and for a cluster with token authentication export RAY_AUTH_MODE=token with its token in "
                        "~/.ray/auth_token or $RAY_AUTH_TOKEN") from None
    resume = shlex.join(["sspa-ray", *argv[:-2], "--resume", "--submit", "--address", address])
    log(f"submitted Ray Job {job_id}: {plan.name} runs on the cluster and keeps running if this client goes away")
    log(f"  follow:  ray job logs --follow --address {address} {job_id}   (or the dashboard's Jobs page)")
    log(f"  status:  ray job status --address {address} {job_id}")
    log(f"  stop:    ray job stop --address {address} {job_id}")
    log(f"  resume:  {resume}")
    log(f"  results: {plan.out} on the head node")
    return job_id
