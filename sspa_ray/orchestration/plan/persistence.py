"""experiment.json and spec.yaml: written at each start and resume, read back by `sspa-ray report`
and --resume, which checks that the command resumes what was started; with --storage a copy
beside Ray's state recovers a lost experiment directory. The newest run is stamped ``finished``
once results.parquet and every table are written, so that a --resume with nothing left to run
says so without starting Ray."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sspa_ray.errors import RunDirError
from sspa_ray.orchestration.storage import get_text, put_text, storage_join
from sspa_ray.outputs import PLAN_FILE, RESULTS_FILE, SPEC_FILE, Status
from sspa_ray.rundir import prepare_new_run_dir
from sspa_ray.version import this_run

if TYPE_CHECKING:
    from sspa_ray.orchestration.plan.base import ExperimentPlan

# What --resume must find unchanged in experiment.json.
RESUMED_AS_STARTED = ("kind", "name", "target", "overrides", "seeds", "storage")
# experiment.json: the key of a run's entry that says when its results and tables were all written.
RUN_FINISHED = "finished"


def prepare_out(plan: ExperimentPlan, *, resume: bool, overwrite: bool) -> str | None:
    """Check --out against --resume/--overwrite and create it; nothing is ever silently replaced.
    Returns a line for the terminal when --resume recovered a lost --out from the store."""
    out = plan.out
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite contradict each other: give one of them")
    if resume:
        recovered = None if (out / PLAN_FILE).is_file() else _recover_out(plan)
        if not (out / PLAN_FILE).is_file():
            raise RunDirError(f"--resume: {out} holds no experiment ({PLAN_FILE} is missing); run without --resume to start one")
        _check_same_as_stored(plan)
        return recovered
    prepare_new_run_dir(out, marker=PLAN_FILE, overwrite=overwrite, what="experiment")
    return None


def save(plan: ExperimentPlan) -> None:
    """Write spec.yaml and experiment.json. experiment.json's ``runs`` gains one entry per start or
    resume (its date and code version), which the report's provenance line names."""
    path = plan.out / PLAN_FILE
    runs = json.loads(path.read_text(encoding="utf-8")).get("runs", []) if path.is_file() else []
    summary = {**plan.summary(), "runs": [*runs, this_run()]}
    texts = {SPEC_FILE: plan.spec_text, PLAN_FILE: _plan_text(summary)}
    for name, text in texts.items():
        (plan.out / name).write_text(text, encoding="utf-8")
        if plan.storage_given:
            put_text(storage_join(plan.experiment_path, name), text)


def mark_finished(plan: ExperimentPlan) -> None:
    """Stamp the newest run in --out's experiment.json: results.parquet and every table are written.
    A run stopped before that (a signal, a full disk, a crash while rendering) has no stamp. The
    store's copy is left as it is: it recovers a lost --out, and that loses the tables too."""
    path = plan.out / PLAN_FILE
    stored = json.loads(path.read_text(encoding="utf-8"))
    stored["runs"][-1][RUN_FINISHED] = this_run()["date"]
    path.write_text(_plan_text(stored), encoding="utf-8")


def _plan_text(stored: dict[str, Any]) -> str:
    return json.dumps(stored, indent=2, sort_keys=True) + "\n"


def nothing_to_resume(plan: ExperimentPlan) -> str | None:
    """The line for the terminal when --resume finds nothing to run: the newest run finished its
    results and tables, and no trial is left that --resume would run (errored ones are retried).
    None otherwise, and the experiment resumes through Tune."""
    runs = json.loads((plan.out / PLAN_FILE).read_text(encoding="utf-8")).get("runs") or []
    results = plan.out / RESULTS_FILE
    if not runs or RUN_FINISHED not in runs[-1] or not results.is_file():
        return None
    import pandas as pd  # here: the other --resume paths need no pandas before Ray starts

    statuses = [Status(s) for s in pd.read_parquet(results, columns=["status"])["status"]]
    if any(s.runs_again_on_resume() for s in statuses):
        return None
    return (f"nothing to resume: all {len(statuses)} trials of {plan.out} had finished, and its results and "
            f"tables were written ({runs[-1][RUN_FINISHED]}); `sspa-ray report {plan.out}` renders the tables again")


def _recover_out(plan: ExperimentPlan) -> str | None:
    """Copy experiment.json and spec.yaml back from the store (--storage given), where save()
    put them: --out was on a machine that is gone (the head node of a --submit, a lost cluster)."""
    if not plan.storage_given:
        return None
    texts = {name: get_text(storage_join(plan.experiment_path, name)) for name in (PLAN_FILE, SPEC_FILE)}
    if texts[PLAN_FILE] is None:
        return None
    plan.out.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        if text is not None:
            (plan.out / name).write_text(text, encoding="utf-8")
    return f"{plan.out} had no {PLAN_FILE}: recovered it and {SPEC_FILE} from {plan.experiment_path}"


def _check_same_as_stored(plan: ExperimentPlan) -> None:
    out = plan.out
    stored: dict[str, Any] = json.loads((out / PLAN_FILE).read_text(encoding="utf-8"))
    if not plan.storage_given and stored.get("storage"):
        plan.storage = stored["storage"]  # --resume without --storage finds the original storage
    # Tune restores the experiment with the logger callbacks it started with.
    plan.loggers = stored["loggers"]
    stored_spec = (out / SPEC_FILE).read_text(encoding="utf-8") if (out / SPEC_FILE).is_file() else None
    mine = plan.summary()
    for key in RESUMED_AS_STARTED:
        if stored.get(key) != json.loads(json.dumps(mine[key])):
            raise RunDirError(
                f"--resume: {out} was started with {key}={stored.get(key)!r}, this command gives "
                f"{mine[key]!r}; resume with the original options, or start a new --out"
            )
    if stored_spec is not None and stored_spec != plan.spec_text:
        raise RunDirError(f"--resume: the YAML differs from {out / SPEC_FILE}, which this experiment ran; "
                          "resume with the original file, or start a new --out")
