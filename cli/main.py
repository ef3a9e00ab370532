"""The ``sspa-ray`` console script."""

from __future__ import annotations

import os
import sys

import click

from sspa_ray.errors import UserError


class _Group(click.Group):
    """Turns every UserError into one line on stderr and exit code 2, without a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"{exc.label}: {exc}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:
            from sspa_ray.orchestration.storage import storage_errno

            # A full, read-only or forbidden output location is the user's to fix, not a bug.
            code = storage_errno(exc)
            if code is None:
                raise
            where = exc.filename or "the output directory"
            click.echo(f"error: cannot write {where}: {os.strerror(code)}; free some space or choose another --out "
                       "(what was already written stays; continue with --resume)", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sspa-ray")
def cli() -> None:
    """SSPA-JT joint training for facial expression recognition, swept and ablated on Ray."""


@cli.command()
@click.option("--target", default="synthetic", show_default=True, help="Show this target's defaults.")
def keys(target: str) -> None:
    """List every dotted config key with its default and allowed values."""
    from sspa_ray.config import coerce
    from sspa_ray.defaults import describe_keys

    click.echo(describe_keys(coerce("data.target", target)))


def _register() -> None:
    from sspa_ray.cli import data, experiment, report, train

    cli.add_command(train.train)
    cli.add_command(experiment.tune)
    cli.add_command(experiment.ablate)
    cli.add_command(report.report)
    cli.add_command(data.data)


_register()


def main() -> None:
    cli(prog_name="sspa-ray")


if __name__ == "__main__":
    main()
