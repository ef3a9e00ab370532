"""``sspa-ray data``: generate the synthetic benchmark, pretrain its backbone, check a dataset folder."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group()
def data() -> None:
    """Generate the synthetic benchmark and its pretrained backbone; check a dataset in its official layout."""


@data.command()
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder to write rafdb/, affectnet/ and ground_truth.csv into (must not hold them yet).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**31 - 1), help="Generator seed.")
@click.option("--scale", default=1.0, show_default=True, type=click.FloatRange(0.01, 100.0),
              help="Size multiplier; 1.0 is 1000 target train, 600 target test and 23000 aux train images "
                   "(AffectNet is 23x RAF-DB).")
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
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Checkpoint file to write (must not exist); give it to --set model.pretrained=FILE.")
@click.option("--backbone", default="small", show_default=True, type=click.Choice(["small", "resnet18"]),
              help="Backbone to pretrain.")
@click.option("--image-size", default=32, show_default=True, type=click.IntRange(16, 1024),
              help="Side of the faces in pixels (the run's data.image_size).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**31 - 1),
              help="Seed of the faces and the training (the run's data.synthetic_seed).")
def pretrain(out: Path, backbone: str, image_size: int, seed: int) -> None:
    """Pretrain a backbone on synthetic face identities (the benchmark's MS-Celeb-1M) into --out.

    This is the backbone that model.pretrained=synthetic-faces (the synthetic target's default)
    builds into the cache on first use; this command writes it wherever you like.
    """
    from sspa_ray.engine import pretrain as pretraining
    from sspa_ray.errors import UserError

    if out.exists():
        raise UserError(f"{out} already exists; choose another --out or delete it")
    recipe = pretraining.Recipe(backbone=backbone, image_size=image_size, seed=seed)
    pretext = pretraining.pretrain(recipe, out, progress=True)
    click.echo(f"wrote {out}: {backbone} at {image_size}px, identity accuracy on {pretext['held_back_images']} "
               f"held-back images {pretext['held_back_accuracy']:.1%} ({pretext['identities']} identities), "
               f"{pretext['seconds']:.0f} s")


@data.command()
@click.argument("dataset", type=click.Choice(["rafdb", "affectnet", "caers"]))
@click.option("--data-root", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder holding rafdb/, affectnet/, caers/ (default: $SSPA_DATA_ROOT).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: per split, class name -> count; beside them `dropped`, `problems` and "
                   "(AffectNet) `valence_arousal`: per split, the min, max and mean of each.")
@click.option("--gallery", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also draw a PNG grid of sample faces per class of the train split.")
def check(dataset: str, data_root: Path | None, as_json: bool, gallery: Path | None) -> None:
    """Count classes per split, list dropped rows and problems, give the ranges of valence and arousal
    (AffectNet), and decode every image once.

    Exits 2 with one line naming the file (and line) on a missing folder, a malformed label
    line, a missing CSV column or an unreadable image.
    """
    from sspa_ray.data import check_dataset
    from sspa_ray.data import data_root as resolve_root

    report = check_dataset(dataset, data_root, progress=not as_json)
    if gallery is not None:
        from sspa_ray.report.dataset_gallery import draw_gallery

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
    for split, ranges in report.get("valence_arousal", {}).items():
        click.echo(f"{split}: " + "; ".join(f"{name} {r['min']:+.3f} to {r['max']:+.3f} (mean {r['mean']:+.3f})"
                                            for name, r in ranges.items()))
    if report["problems"]:
        click.echo("problems:")
        for problem in report["problems"]:
            click.echo(f"  {problem}")
    else:
        click.echo("problems: none")
