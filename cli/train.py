"""``sspa-ray train``: one configuration, in this process, without Ray."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from sspa_ray.config import EXECUTION_KEYS, from_flat
from sspa_ray.defaults import make_config, parse_sets, selection_note
from sspa_ray.errors import ConfigError
from sspa_ray.outputs import CONFIG_FILE, METRICS_FILE
from sspa_ray.rundir import check_new_run_dir, prepare_new_run_dir, read_run_config
from sspa_ray.tracking import LOGGERS, RunTrackers, check_loggers


def _read_run_config(run_dir: Path):
    flat = read_run_config(run_dir)
    try:
        return from_flat(flat).validate()
    except ConfigError as exc:
        raise ConfigError(f"{run_dir / CONFIG_FILE}: {exc}") from None


@click.command()
@click.option("--target", type=str, default=None, help="target dataset: rafdb | caers | synthetic")
@click.option("--aux", type=str, default=None, help="auxiliary dataset: affectnet | none")
@click.option("--data-root", type=str, default=None, help="folder holding rafdb/, affectnet/, caers/")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a config key (repeatable)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="new run folder")
@click.option("--resume", type=click.Path(file_okay=False, path_type=Path), default=None, help="run folder to continue")
@click.option("--overwrite", is_flag=True, help="replace an existing run in --out")
@click.option("--logger", "loggers", multiple=True, type=click.Choice(LOGGERS),
              help="experiment tracker (repeatable; default tensorboard); mlflow and wandb need their extra")
def train(target, aux, data_root, sets, out, resume, overwrite, loggers):
    """Train one configuration; write RUN_DIR/metrics.json, selection.csv and checkpoints."""
    if (out is None) == (resume is None):
        raise ConfigError("give exactly one of --out RUN_DIR (a new run) or --resume RUN_DIR")
    loggers = check_loggers(loggers)
    overrides = parse_sets(sets)
    if data_root is not None:
        overrides["data.root"] = data_root
    if resume is not None:
        fixed = [flag for flag, value in (("--target", target), ("--aux", aux), ("--overwrite", overwrite)) if value]
        fixed += [f"--set {key}" for key in overrides if key not in EXECUTION_KEYS]
        if fixed:
            raise ConfigError(
                f"--resume continues a run with its own config; drop {fixed[0]} "
                f"(only {', '.join(sorted(EXECUTION_KEYS))} may change)"
            )
        cfg = _read_run_config(resume)
        for key, value in overrides.items():
            cfg.set(key, value)
        run_dir = resume
    else:
        if aux is not None:
            overrides["data.aux"] = aux
        cfg = make_config(target, overrides)
        note = selection_note(target, overrides)
        if note:
            click.echo(note)
        run_dir = out
        check_new_run_dir(run_dir, marker=CONFIG_FILE, overwrite=overwrite)

    # Imported once the command line and the config hold: the engine loads torch (1.5 s of CPU).
    from sspa_ray.data import load_joint_data
    from sspa_ray.engine import TrainingDiverged, TrainingOutOfMemory, fit
    from sspa_ray.engine.checkpoint import atomic_write_text

    data = load_joint_data(cfg)  # bad data stops here, before --out exists
    if resume is None:
        prepare_new_run_dir(run_dir, marker=CONFIG_FILE, overwrite=overwrite)
        atomic_write_text(run_dir / CONFIG_FILE, json.dumps(cfg.to_flat(), indent=1) + "\n")
    trackers = RunTrackers(loggers, cfg.to_flat(), run_dir)
    metrics = None
    try:
        metrics = fit(cfg, run_dir, data=data, resume=resume is not None, log=click.echo,
                      report=lambda record, _checkpoint: trackers.epoch(record))
    except (TrainingDiverged, TrainingOutOfMemory) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        trackers.close(metrics, failed=metrics is None)
    click.echo(
        f"final: accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  "
        f"(best accuracy {metrics['best']['accuracy']:.4f} at epoch {metrics['best']['epoch']}, selected on test) "
        f"-> {run_dir / METRICS_FILE}"
    )

