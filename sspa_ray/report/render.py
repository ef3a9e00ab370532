"""Re-render an experiment's tables and plots from what it stored, without re-running it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from sspa_ray.config import make_config
from sspa_ray.errors import RunDirError
from sspa_ray.report.aggregate import METRICS, aggregate, read_results
from sspa_ray.report.plots import RECALL_COLUMNS, plot_ablation
from sspa_ray.report.tables import Table, ablation_table, to_csv, to_latex, to_markdown, tune_table
from sspa_ray.specs.ablation import AblationSpec, load_ablation

FORMATS = {"md": "md", "csv": "csv", "tex": "tex", "latex": "tex", "parquet": "parquet"}


def _read_experiment(exp_dir: Path) -> dict[str, Any]:
    path = exp_dir / "experiment.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: unreadable ({exc}); restore it or delete it to render from results only") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: expected a JSON object; restore it or delete it to render from results only")
    return data


def _expected(spec: AblationSpec, target: str, experiment: dict[str, Any]) -> list[tuple[int, dict]]:
    """(row, config) of every trial the experiment runs, so that missing ones show as pending."""
    trials = spec.trials(target, experiment.get("overrides") or {}, experiment.get("seeds"))
    return [(t.row, make_config(target, t.overrides).to_flat()) for t in trials]


def _first(results: pd.DataFrame, column: str) -> Any:
    if column in results.columns and len(results):
        return results[column].iloc[0]
    return None


def _write(table: Table, fmt: str, path: Path, label: str) -> None:
    if fmt == "parquet":
        table.data.to_parquet(path, index=False)
        return
    text = {"md": to_markdown, "csv": to_csv}[fmt](table) if fmt != "tex" else to_latex(table, label=label)
    path.write_text(text, encoding="utf-8")


def render_experiment(exp_dir: str | Path, formats: Iterable[str] = ("md", "csv", "tex"),
                      metric: str = "final") -> dict[str, Path]:
    """Write table.{md,csv,tex} (table_best.* for metric="best") and the plots into `exp_dir`.

    Reads exp_dir/results.parquet, exp_dir/spec.yaml (ablations) and exp_dir/experiment.json.
    Returns the written files: keys "md", "csv", "tex", "parquet" and one per plot.
    """
    exp_dir = Path(exp_dir)
    if metric not in ("final", "best"):
        raise ValueError(f"metric must be 'final' or 'best', not {metric!r}")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown table format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    results = read_results(exp_dir)
    experiment = _read_experiment(exp_dir)
    best = metric == "best"
    prefix = "best." if best else ""
    spec_path = exp_dir / "spec.yaml"
    kind = experiment.get("kind") or ("ablate" if spec_path.is_file() else "tune")
    target = experiment.get("target") or _first(results, "data.target") or "synthetic"

    plots: dict[str, Path] = {}
    if kind == "ablate":
        if not spec_path.is_file():
            raise RunDirError(f"{exp_dir}: an ablation without spec.yaml; copy the preset YAML there as spec.yaml")
        spec = load_ablation(spec_path)
        has_recall = not best and all(c in results.columns for c in RECALL_COLUMNS)
        groups = aggregate(results, spec.metrics, prefix=prefix, expected=_expected(spec, target, experiment),
                           extra_columns=RECALL_COLUMNS if has_recall else ())
        table = ablation_table(spec, groups, target, best=best)
        plots = plot_ablation(spec, groups, exp_dir, target=target, best=best, has_recall=has_recall)
        label = spec.name
    else:
        sort_metric = experiment.get("metric") or "accuracy"
        metrics = METRICS if sort_metric in METRICS else (sort_metric, *METRICS)
        groups = aggregate(results, metrics, prefix=prefix, counted=("completed", "stopped"))
        title = f"{experiment.get('name') or exp_dir.name}: {target}"
        table = tune_table(groups, title=title, sort_metric=sort_metric,
                           mode=experiment.get("mode") or "max", best=best)
        label = exp_dir.name

    stem = "table_best" if best else "table"
    written: dict[str, Path] = {}
    for fmt in dict.fromkeys(FORMATS[f] for f in formats):
        path = exp_dir / f"{stem}.{fmt}"
        _write(table, fmt, path, label)
        written[fmt] = path
    written.update(plots)
    return written
