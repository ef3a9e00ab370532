"""``sspa-ray tune`` and ``sspa-ray ablate``: parse, validate everything, then hand over to Ray.

Nothing here imports Ray: a bad YAML file, key, value, preset, data folder or output directory is
reported (one line, exit 2) before any cluster starts.
"""

from __future__ import annotations

import functools
import shlex
import shutil
import sys
from pathlib import Path

import click

from sspa_ray.config import SYNTHETIC_PRETRAINED, coerce
from sspa_ray.defaults import parse_sets, selection_note
from sspa_ray.errors import Interrupted, UserError
from sspa_ray.outputs import RESULTS_FILE, Status
from sspa_ray.tracking import LOGGERS, check_loggers

_PATH_KEYS = ("data.root", "model.pretrained")


def _common_options(command):
    options = [
        click.option("--target", default=None, help="Target dataset: synthetic (default), rafdb or caers."),
        click.option("--aux", default=None, help="Auxiliary dataset: affectnet or none (sets data.aux)."),
        click.option("--data-root", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="Folder holding rafdb/, affectnet/, caers/ (default: $SSPA_DATA_ROOT)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override a config key in every trial, e.g. --set train.epochs=20 (repeatable)."),
        click.option("--seeds", type=int, default=None,
                     help="Replicate each configuration with train.seed = base..base+N-1 "
                          "(tune: default 1; ablate: the preset's `seeds`)."),
        click.option("--out", type=click.Path(path_type=Path), default=None,
                     help="Experiment directory (default: experiments/NAME)."),
        click.option("--name", default=None, help="Experiment name (default: the YAML's name)."),
        click.option("--resume", is_flag=True, help="Continue the interrupted experiment in --out."),
        click.option("--overwrite", is_flag=True, help="Replace an existing experiment in --out."),
        click.option("--address", default=None,
                     help="Join an existing Ray cluster: auto, or ray://HOST:PORT (default: start a local Ray)."),
        click.option("--storage", default=None,
                     help="Where Ray keeps trial state and checkpoints: a path or URI (s3://, gs://); must be "
                          "shared by every node of a multi-node cluster (default: OUT/ray)."),
        click.option("--gpus-per-trial", type=float, default=0.0, show_default=True,
                     help="GPUs per trial; a fraction packs several trials on one GPU."),
        click.option("--cpus-per-trial", type=float, default=1.0, show_default=True,
                     help="CPUs per trial; also the trial's torch threads."),
        click.option("--workers-per-trial", type=int, default=0, show_default=True,
                     help="0: run the engine in the trial process; N: a TorchTrainer with N DDP workers."),
        click.option("--max-concurrent", type=int, default=0, show_default=True,
                     help="Most trials at once (0: as many as the resources allow)."),
        click.option("--max-failures", type=int, default=2, show_default=True,
                     help="Retries of a crashed trial, each from its last checkpoint."),
        click.option("--dashboard", is_flag=True, help="Serve the Ray dashboard (127.0.0.1, token sign-in)."),
        click.option("--dashboard-host", default=None,
                     help="Address for the dashboard (implies --dashboard); 0.0.0.0 exposes it to the network."),
        click.option("--dry-run", is_flag=True,
                     help="Print the trials, their resources and a time estimate; start nothing."),
        click.option("--throughput", type=float, default=None, metavar="IMG_PER_S",
                     help="--dry-run: training images per second per trial to estimate with (default: a "
                          "short burst of the engine on this machine's device, cached per device and setting)."),
        click.option("--logger", "loggers", multiple=True, type=click.Choice(LOGGERS),
                     help="Experiment tracker (repeatable; default tensorboard): Ray's logger callbacks. "
                          "mlflow and wandb need their extra: pip install \"sspa-ray[mlflow]\"."),
        click.option("--submit", is_flag=True,
                     help="Run the whole experiment as a Ray Job on the cluster of --address http://HEAD:8265; "
                          "paths are the head node's."),
        click.option("--dashboard-port", type=int, default=None,
                     help="Port for the dashboard (implies --dashboard; default 8265)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command()
@click.argument("space_file", metavar="SPACE.yaml", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--num-samples", type=int, default=None,
              help="Trials to draw (random, optuna) or repeats of the grid; overrides the space's num_samples.")
@_common_options
def tune(space_file: Path, num_samples: int | None, **options) -> None:
    """Sweep a search space (YAML) of dotted config keys on Ray Tune."""
    from sspa_ray.orchestration.plan import ExperimentPlan
    from sspa_ray.specs.search_space import load_search_space, with_num_samples

    space = with_num_samples(load_search_space(space_file), num_samples)
    if options["seeds"] is None:
        options["seeds"] = 1
    _run(functools.partial(ExperimentPlan.for_search, space), **options)


@click.command()
@click.argument("ablation_file", metavar="[ABLATION.yaml]", required=False, default=None)
@click.option("--preset", default=None,
              help="A preset of ablations/ (modules, experts, beta, aux_ratio, ...), or paper: every table of "
                   "the paper for the target as one experiment of shared trials.")
@_common_options
def ablate(ablation_file: str | None, preset: str | None, **options) -> None:
    """Run an ablation (default preset: modules, the paper's Table 5) on Ray Tune."""
    from sspa_ray.orchestration.plan import ExperimentPlan
    from sspa_ray.specs.ablation import load_ablation
    from sspa_ray.specs.suite import PAPER, paper_suite

    if ablation_file and preset:
        raise UserError("give either --preset NAME or an ABLATION.yaml file, not both")
    if preset == PAPER:
        # The suite's tables depend on the target, so it is built once the target is known.
        _run(lambda target, **kw: ExperimentPlan.for_ablation(paper_suite(target), target=target, **kw), **options)
        return
    spec = load_ablation(ablation_file or preset or "modules")
    _run(functools.partial(ExperimentPlan.for_ablation, spec), **options)


def _run(make_plan, *, target, aux, data_root, sets, seeds, out, name, resume, overwrite, address, storage,
         gpus_per_trial, cpus_per_trial, workers_per_trial, max_concurrent, max_failures, dashboard,
         dashboard_host, dashboard_port, dry_run, throughput, loggers, submit) -> None:
    from sspa_ray.orchestration.cluster import DASHBOARD_PORT, LOOPBACK, ClusterOptions, isolate_local_ray
    from sspa_ray.orchestration.plan import Resources
    from sspa_ray.orchestration.storage import check_storage, has_checkpoints

    overrides = {}
    if aux is not None:
        overrides["data.aux"] = coerce("data.aux", aux)
    if data_root is not None:
        overrides["data.root"] = str(data_root)
    overrides.update(parse_sets(sets))
    # Trials run in their own working directories: paths must not depend on where we are.
    for key in _PATH_KEYS:
        if overrides.get(key) and overrides[key] != SYNTHETIC_PRETRAINED:
            overrides[key] = str(Path(overrides[key]).expanduser().resolve())
    target = coerce("data.target", overrides.pop("data.target", target) or "synthetic")
    shortened = selection_note(target, overrides)
    resources = Resources(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                          workers_per_trial=workers_per_trial, max_concurrent=max_concurrent,
                          max_failures=max_failures)
    _check_job_address(address, submit)
    chosen_loggers = check_loggers(loggers)
    cluster = ClusterOptions(address=None if submit else address,
                             dashboard=dashboard or dashboard_host is not None or dashboard_port is not None,
                             dashboard_host=dashboard_host or LOOPBACK,
                             dashboard_port=DASHBOARD_PORT if dashboard_port is None else dashboard_port,
                             ).check(starts_ray=not (dry_run or submit))
    plan = make_plan(target=target, sets=overrides, seeds=seeds, out=out, name=name, storage=storage,
                     resources=resources, dry_run=dry_run)
    if throughput is not None and (throughput <= 0 or not dry_run):
        raise UserError(f"--throughput {throughput:g} is invalid: give images per second > 0, with --dry-run")
    plan.loggers = chosen_loggers
    # Warnings come after every check, so that bad input stays one line.
    notes = [shortened, *plan.notes] if shortened else list(plan.notes)
    if dry_run:
        _echo_notes(notes)
        from sspa_ray.orchestration.dryrun import describe_plan

        describe_plan(plan, throughput=throughput, log=click.echo)
        return
    if submit:
        from sspa_ray.orchestration.jobs import submit_experiment

        # The job re-checks --out on the head node, where the experiment lives.
        _echo_notes(notes)
        submit_experiment(address, _job_argv(click.get_current_context(), plan), plan, log=click.echo)
        return
    fresh = not resume and not plan.out.exists()
    recovered = plan.prepare_out(resume=resume, overwrite=overwrite)  # --resume reads the stored --storage here
    if recovered:
        click.echo(recovered, err=True)
    if resume and (finished := plan.nothing_to_resume()):
        click.echo(finished)
        return
    try:
        check_storage(plan.storage, plan.experiment_path)
    except UserError:
        if fresh:
            shutil.rmtree(plan.out, ignore_errors=True)
        raise
    _echo_notes(notes)
    plan.prepare_node()
    if address is None:
        isolate_local_ray()  # Ray reads its node address settings when it is first imported

    from sspa_ray.orchestration.stop import ExperimentStopped
    from sspa_ray.orchestration.tuner import run_experiment  # the first Ray import

    try:
        frame = run_experiment(plan, resume=resume, cluster=cluster, log=click.echo)
    except ExperimentStopped as stopped:
        raise _stopped_error(stopped) from None
    except Exception:
        if fresh and not has_checkpoints(plan.experiment_path):
            shutil.rmtree(plan.out, ignore_errors=True)  # nothing was computed: leave no half-made --out
        raise
    if (frame["status"] == Status.ERRORED).any():
        click.echo(f"some trials errored after their retries; see the error column of {RESULTS_FILE}", err=True)
        sys.exit(1)


def _echo_notes(notes: list[str]) -> None:
    for note in notes:
        click.echo(note, err=True)


_JOB_URL = ("http://", "https://")
# Options the job gets from the plan (resolved values), and options that only mean something here.
_FROM_PLAN = {"target", "aux", "data_root", "sets", "seeds", "out", "name", "loggers", "storage"}
_CLIENT_ONLY = {"submit", "address", "dashboard", "dashboard_host"}


def _check_job_address(address: str | None, submit: bool) -> None:
    is_url = bool(address) and address.startswith(_JOB_URL)
    if submit and not is_url:
        raise UserError("--submit needs the cluster's dashboard address: --address http://HEAD:8265")
    if is_url and not submit:
        raise UserError(f"--address {address} is a dashboard (Jobs API) address: add --submit to run the "
                        "experiment as a Ray Job there, or give auto, HOST:6379 or ray://HOST:10001")


def _job_argv(ctx: click.Context, plan) -> list[str]:
    """The command the Ray Job runs: this one, with resolved paths and values, joining the cluster."""
    argv = [ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params[param.name]
        if param.name in _FROM_PLAN or param.name in _CLIENT_ONLY or value is None or value is False:
            continue
        if isinstance(param, click.Argument):
            argv.append(str(Path(value).resolve()) if Path(value).is_file() else str(value))
        elif param.is_flag:
            argv.append(param.opts[0])
        elif value != param.default:
            argv += [param.opts[0], str(value)]
    argv += ["--target", plan.target, "--seeds", str(plan.seeds), "--out", str(plan.out), "--name", plan.name]
    if plan.storage_given:
        argv += ["--storage", plan.storage]
    for key, value in plan.sets.items():
        argv += ["--set", f"{key}={_set_text(value)}"]
    for logger in plan.loggers:
        argv += ["--logger", logger]
    return [*argv, "--address", "auto"]


def _set_text(value) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _resume_command() -> str:
    """This command line as the user typed it, continuing the experiment instead of starting it."""
    args = [arg for arg in sys.argv[1:] if arg not in ("--overwrite", "--resume")]
    return shlex.join(["sspa-ray", *args, "--resume"])


def _stopped_error(stopped) -> UserError:
    import signal

    from sspa_ray.orchestration.storage import free_bytes

    frame = stopped.frame
    counts = frame["status"].value_counts().to_dict() if frame is not None else {}
    finished = sum(n for status, n in counts.items() if status != Status.PENDING)
    total = max(stopped.trials, len(frame) if frame is not None else 0)
    resume = f"continue with: {_resume_command()}"
    if stopped.signum is not None:
        return Interrupted(f"{signal.Signals(stopped.signum).name}: {finished} of {total} trials finished, "
                           f"the others continue from their last checkpoint; {resume}", stopped.exit_code)
    error = stopped.storage
    path = getattr(error, "path", None) or getattr(error, "filename", None) or "the experiment storage"
    reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or str(error)
    free = free_bytes(str(path))
    need = total * (stopped.checkpoints_kept + 1) * stopped.checkpoint_bytes
    space = f"{_mib(free)} free" if free is not None else "no space"
    if need:
        space += (f"; the experiment needs about {_mib(need)} there ({total} trials x "
                  f"{stopped.checkpoints_kept + 1} checkpoints of {_mib(stopped.checkpoint_bytes)})")
    return UserError(f"cannot write {path}: {reason} ({space}); {finished} of {total} trials finished. "
                     f"Free some space, then {resume}")


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"
