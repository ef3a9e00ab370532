"""``sspa-ray report``: re-render an experiment's tables, claims, plots and report.html without re-running it."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("experiment_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex", "parquet"]), default="md",
              show_default=True, help="Which table to print; md, csv and latex files are always rewritten.")
@click.option("--metric", type=click.Choice(["final", "best"]), default="final", show_default=True,
              help="Final-epoch metrics, or best-epoch ones (that epoch is selected on the test set).")
def report(experiment_dir: Path, fmt: str, metric: str) -> None:
    """Re-render the tables, claims, plots and report.html of EXPERIMENT_DIR from its results.parquet.

    Works on a finished, partial or still-running tune or ablate experiment: trials that have
    not reported are shown as pending, failed ones as errored or diverged.
    """
    from sspa_ray.report import render_experiment

    formats = ("md", "csv", "tex") + (("parquet",) if fmt == "parquet" else ())
    written = render_experiment(experiment_dir, formats, metric)
    if fmt == "parquet":
        click.echo(str(written["parquet"]))
    else:
        click.echo(written["tex" if fmt == "latex" else fmt].read_text(encoding="utf-8"), nl=False)
    for path in written.values():
        click.echo(f"wrote {path}", err=True)
