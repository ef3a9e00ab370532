"""``sspa-ray data``: generate the synthetic benchmark, check a dataset folder."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group()
def data() -> None:
    """Generate the synthetic benchmark; check a dataset in its official layout."""


@data.command()
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder to write rafdb/, affectnet/ and ground_truth.csv into (must not hold them yet).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**31 - 1), help="Generator seed.")
@click.option("--scale", default=1.0, show_default=True, type=click.FloatRange(0.01, 100.0),
              help="Size multiplier; 1.0 is 1000 target train, 600 target test and 2000 aux train images.")
def synth(out: Path, seed: int, scale: float) -> None:
    """Write the synthetic FER benchmark in the official RAF-DB and AffectNet layouts."""
    from sspa_ray.data import synthetic

    summary = synthetic.generate(out, seed, scale, progress=True)
    train = summary["rafdb_train"]
    click.echo(f"wrote {summary['images']} images to {out}")
    click.echo(f"target train ({sum(train.values())}): " + ", ".join(f"{k} {v}" for k, v in train.items()))
    click.echo(f"target test: {summary['rafdb_test']}; aux train: {summary['affectnet_train']}")
    click.echo(f"largest/smallest target class: {summary['imbalance']:.1f}; "
               f"aux labels that disagree with the target standard: {summary['aux_disagreement']:.1%}")


@data.command()
@click.argument("dataset", type=click.Choice(["rafdb", "affectnet", "caers"]))
@click.option("--data-root", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder holding rafdb/, affectnet/, caers/ (default: $SSPA_DATA_ROOT).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: per split, class name -> count.")
@click.option("--gallery", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also draw a PNG grid of sample faces per class of the train split.")
def check(dataset: str, data_root: Path | None, as_json: bool, gallery: Path | None) -> None:
    """Count classes per split, list dropped rows and problems, and decode every image once.

    Exits 2 with one line naming the file (and line) on a missing folder, a malformed label
    line, a missing CSV column or an unreadable image.
    """
    from sspa_ray.data import check_dataset, data_root as resolve_root

    report = check_dataset(dataset, data_root, progress=not as_json)
    if gallery is not None:
        from sspa_ray.data.gallery import draw_gallery

        draw_gallery(dataset, resolve_root(data_root), gallery)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_report(report)
    if gallery is not None:
        click.echo(f"wrote {gallery}", err=True)


def _print_report(report: dict) -> None:
    splits = [key for key in ("train", "val", "test") if key in report]
    classes = list(report[splits[0]])
    click.echo(f"{report['dataset']} at {report['root']}")
    click.echo(f"{'class':12}" + "".join(f"{split:>10}" for split in splits))
    for name in classes:
        click.echo(f"{name:12}" + "".join(f"{report[split][name]:>10}" for split in splits))
    click.echo(f"{'total':12}" + "".join(f"{sum(report[split].values()):>10}" for split in splits))
    for split in splits:
        dropped = report["dropped"][split]
        if dropped:
            click.echo(f"dropped from {split}: " + ", ".join(f"{n} {reason}" for reason, n in dropped.items()))
    if report["problems"]:
        click.echo("problems:")
        for problem in report["problems"]:
            click.echo(f"  {problem}")
    else:
        click.echo("problems: none")
