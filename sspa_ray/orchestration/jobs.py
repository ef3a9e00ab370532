"""``--submit``: the whole experiment as a Ray Job on a cluster (Ray's Job Submission API).

The job runs the same ``sspa-ray`` command on the head node with ``--address auto``, so its driver
(and the live table) lives on the cluster: it keeps running when the submitting client goes away,
and its output is on the dashboard's Jobs page and in ``ray job logs``.

The client waits until the job's driver has joined the cluster (the line ``cluster.JOINED`` in its
log) or the job has ended. A job that ends first, such as one whose head has no ``sspa-ray`` on the
PATH of the environment ``ray start`` ran from, is :class:`JobFailed` (exit 1): the last lines of its
log and the likely fix.

Ray 2.60's token authentication: Ray's Job SDK sends ``Authorization: Bearer <token>`` when
``RAY_AUTH_MODE=token`` is set, with the token its loader finds (``$RAY_AUTH_TOKEN``, the file
``$RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``). Like ``ray.init`` with an explicit address, it
never sends a token to a cluster the user has not opted into, and neither does sspa-ray.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable

from sspa_ray.errors import JobFailed, UserError
from sspa_ray.orchestration.cluster import JOINED
from sspa_ray.orchestration.plan import ExperimentPlan

ENTRYPOINT = "sspa-ray"
# Job metadata that names the experiment on the Jobs page.
METADATA_KEY = "sspa_ray.experiment"
# How long the client waits for the job's driver to join the cluster: the head may first set up the
# job's runtime environment and import torch on a busy node.
START_WAIT_S = 300.0
# Log lines shown when a job failed at start.
LOG_TAIL_LINES = 12


def submit_experiment(address: str, argv: list[str], plan: ExperimentPlan, log: Callable[[str], None] = print,
                      wait_s: float = START_WAIT_S) -> str:
    """Submit `sspa-ray ARGV` as a Ray Job, wait until it runs, and print how to follow, stop and
    resume it; returns its id. A job that ends before its driver joined the cluster raises JobFailed."""
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
    state = _wait_until_started(client, job_id, address, wait_s)
    log(f"submitted Ray Job {job_id}: {plan.name} {state} on the cluster and keeps running if this client goes away")
    log(f"  follow:  ray job logs --follow --address {address} {job_id}   (or the dashboard's Jobs page)")
    log(f"  status:  ray job status --address {address} {job_id}")
    log(f"  stop:    ray job stop --address {address} {job_id}")
    log(f"  resume:  {resume}")
    log(f"  results: {plan.out} on the head node")
    return job_id


def _wait_until_started(client, job_id: str, address: str, wait_s: float) -> str:
    """Poll the job until its driver has joined the cluster ('runs'), it has ended, or `wait_s` passed."""
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + wait_s
    while True:
        status = client.get_job_status(job_id)
        if status in (JobStatus.FAILED, JobStatus.STOPPED):
            raise _failed(client, job_id, status, address)
        if status == JobStatus.SUCCEEDED:
            return "has already finished"
        if status == JobStatus.RUNNING and JOINED in client.get_job_logs(job_id):
            return "runs"
        if time.monotonic() > deadline:
            return f"is still starting ({status.value} after {wait_s:.0f} s)"
        time.sleep(1.0)


def _failed(client, job_id: str, status, address: str) -> JobFailed:
    info = client.get_job_info(job_id)
    lines = [line for line in client.get_job_logs(job_id).splitlines() if line.strip()]
    tail = "\n".join(f"  | {line}" for line in lines[-LOG_TAIL_LINES:]) or "  | (the job wrote no log)"
    code = f" with exit code {info.driver_exit_code}" if info.driver_exit_code is not None else ""
    return JobFailed(f"Ray Job {job_id} {status.value.lower()}{code} before the experiment started; the end of "
                     f"its log:\n{tail}\nlikely fix: {_likely_fix(lines, job_id, address)}")


def _likely_fix(lines: list[str], job_id: str, address: str) -> str:
    """What the end of a failed job's log most likely asks the user to do."""
    text = "\n".join(lines)
    if f"{ENTRYPOINT}: not found" in text or "command not found" in text:
        return (f"the head node runs the job with the PATH of the environment `ray start --head` ran from, and "
                f"{ENTRYPOINT} is not on it: install sspa-ray there, or restart the head from the environment "
                "that has it (`source .venv/bin/activate` first, then `ray start --head ...`)")
    if "No module named" in text:
        return ("the head node's Python lacks a package the job needs: install the same sspa-ray (with its "
                "dependencies) in the environment `ray start --head` ran from")
    errors = [line for line in lines if line.startswith("error: ")]
    if errors:
        return f"the command was refused on the head node ({errors[-1][len('error: '):]}); paths are the head node's"
    return f"read the whole log: ray job logs --address {address} {job_id}"
