"""Re-render an experiment's tables and plots from what it stored, without re-running it."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from sspa_ray.config import make_config
from sspa_ray.errors import RunDirError
from sspa_ray.outputs import METRICS, PLAN_FILE, SPEC_FILE, TABLE_BEST_STEM, TABLE_STEM, Kind, Status
from sspa_ray.report.aggregate import aggregate, read_results
from sspa_ray.report.claims import write_claims
from sspa_ray.report.plots import OVERLAY, RECALL_COLUMNS, overlay_ratio, plot_ablation
from sspa_ray.report.provenance import Provenance, provenance
from sspa_ray.report.relabel import plot_relabelling
from sspa_ray.report.selection import selection_figures
from sspa_ray.report.tables import Table, ablation_table, to_csv, to_latex, to_markdown, tune_table
from sspa_ray.specs.ablation import AblationSpec, load_ablation
from sspa_ray.specs.suite import Suite, is_suite, load_suite, parse_feeds

FORMATS = {"md": "md", "csv": "csv", "tex": "tex", "latex": "tex", "parquet": "parquet"}


def _read_experiment(exp_dir: Path) -> dict[str, Any]:
    path = exp_dir / PLAN_FILE
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


def _write(table: Table, fmt: str, path: Path, label: str, prov: Provenance) -> None:
    """One table file; Markdown and LaTeX carry the provenance line, CSV and parquet have provenance.json."""
    if fmt == "parquet":
        table.data.to_parquet(path, index=False)
        return
    if fmt == "md":
        text = f"{prov.markdown()}\n\n{to_markdown(table)}"
    elif fmt == "tex":
        text = to_latex(table, label=label, comment=prov.markdown())
    else:
        text = to_csv(table)
    path.write_text(text, encoding="utf-8")


def render_experiment(exp_dir: str | Path, formats: Iterable[str] = ("md", "csv", "tex"),
                      metric: str = "final") -> dict[str, Path]:
    """Write table.{md,csv,tex} (table_best.* for metric="best") and the plots into `exp_dir`.

    A ``--preset paper`` experiment also gets one folder per table (table_5/table.md, ...).

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
    target = experiment.get("target") or _first(results, "data.target") or "synthetic"
    return _renderer(exp_dir, experiment)(exp_dir, results, experiment, target, formats, metric == "best")


Renderer = Callable[[Path, pd.DataFrame, dict[str, Any], str, Iterable[str], bool], dict[str, Path]]


def _renderer(exp_dir: Path, experiment: dict[str, Any]) -> Renderer:
    """How this experiment renders, from what it stored: a search space's table, one preset's table,
    or a suite's tables (experiment.json's kind; an experiment without one is an ablation when it
    kept its spec.yaml)."""
    spec_path = exp_dir / SPEC_FILE
    kind = experiment.get("kind") or (Kind.ABLATE if spec_path.is_file() else Kind.TUNE)
    if kind != Kind.ABLATE:
        return _render_tune
    if not spec_path.is_file():
        raise RunDirError(f"{exp_dir}: an ablation without {SPEC_FILE}; copy the preset YAML there as {SPEC_FILE}")
    if is_suite(spec_path.read_text(encoding="utf-8")):
        return functools.partial(_render_suite, load_suite(spec_path))
    return functools.partial(_render_ablation, load_ablation(spec_path))


def _render_tune(exp_dir: Path, results: pd.DataFrame, experiment: dict[str, Any], target: str,
                 formats: Iterable[str], best: bool) -> dict[str, Path]:
    """One table of the configurations, sorted by the search's metric."""
    sort_metric = experiment.get("metric") or METRICS[0]
    metrics = METRICS if sort_metric in METRICS else (sort_metric, *METRICS)
    groups = aggregate(results, metrics, prefix="best." if best else "", counted=(Status.COMPLETED, Status.STOPPED))
    title = f"{experiment.get('name') or exp_dir.name}: {target}"
    table = tune_table(groups, title=title, sort_metric=sort_metric, mode=experiment.get("mode") or "max", best=best)
    return _write_all(table, exp_dir, formats, best, exp_dir.name, provenance(results, experiment))


def _render_ablation(spec: AblationSpec, exp_dir: Path, results: pd.DataFrame, experiment: dict[str, Any],
                     target: str, formats: Iterable[str], best: bool) -> dict[str, Path]:
    """The preset's table, its plots and its claims' verdicts."""
    prov = provenance(results, experiment)
    table, plots, _ = _ablation_outputs(spec, results, target, experiment, exp_dir, best, prov)
    written = _write_all(table, exp_dir, formats, best, spec.name, prov)
    written.update(plots)
    return written


def _write_all(table: Table, out_dir: Path, formats: Iterable[str], best: bool, label: str,
               prov: Provenance) -> dict[str, Path]:
    """table.{md,csv,tex,parquet} (table_best.* with its own LaTeX label) and provenance.json."""
    stem = TABLE_BEST_STEM if best else TABLE_STEM
    written: dict[str, Path] = {"provenance": prov.write(out_dir)}
    for fmt in dict.fromkeys(FORMATS[f] for f in formats):
        path = out_dir / f"{stem}.{fmt}"
        _write(table, fmt, path, label + ("_best" if best else ""), prov)
        written[fmt] = path
    return written


def _ablation_outputs(spec: AblationSpec, results: pd.DataFrame, target: str, experiment: dict[str, Any],
                      out_dir: Path, best: bool, prov: Provenance) -> tuple[Table, dict[str, Path], list]:
    """The table and plots of one preset, as `ablate --preset NAME` renders them."""
    has_recall = not best and all(c in results.columns for c in RECALL_COLUMNS)
    groups = aggregate(results, spec.metrics, prefix="best." if best else "",
                       expected=_expected(spec, target, experiment),
                       extra_columns=RECALL_COLUMNS if has_recall else ())
    table = ablation_table(spec, groups, target, best=best)
    plots = plot_ablation(spec, groups, out_dir, target=target, best=best, has_recall=has_recall, footer=prov.line())
    plots.update(write_claims(spec, results, target, out_dir, best=best, provenance=prov))
    if not best:
        plots.update(selection_figures(spec, results, out_dir, experiment, footer=prov.line()))
        plots.update(plot_relabelling(spec, results, out_dir, footer=prov.line()))
    return table, plots, groups


def table_rows(results: pd.DataFrame, table: str) -> pd.DataFrame:
    """The trials of a suite that fill `table`, each with its row index in that table."""
    records = [{**record, "row": row} for record in results.to_dict("records")
               for name, row in parse_feeds(record.get("feeds")) if name == table]
    return pd.DataFrame.from_records(records, columns=results.columns)


def _render_suite(suite: Suite, exp_dir: Path, results: pd.DataFrame, experiment: dict[str, Any], target: str,
                  formats: Iterable[str], best: bool) -> dict[str, Path]:
    """One folder per table (table_5/table.md, its plots, its spec.yaml), rendered as its own preset
    renders it, and at the top every table in one file plus the figures that span tables."""
    written: dict[str, Path] = {}
    tables: dict[str, Table] = {}
    groups_by_table = {}
    suffix = " (best epoch)" if best else ""
    for name, spec in suite.tables.items():
        folder = exp_dir / name
        folder.mkdir(exist_ok=True)
        (folder / SPEC_FILE).write_text(suite.texts[name], encoding="utf-8")
        rows = table_rows(results, name)
        prov = provenance(rows, experiment)
        table, plots, groups = _ablation_outputs(spec, rows, target, experiment, folder, best, prov)
        for fmt, path in _write_all(table, folder, formats, best, spec.name, prov).items():
            written[f"{name}/{fmt}"] = path
        written.update({f"{name}/{plot}": path for plot, path in plots.items()})
        tables[name] = table
        groups_by_table[name] = (spec, [g for g in groups if g.row >= 0])
    prov = provenance(results, experiment)
    if all(name in groups_by_table for name in OVERLAY):
        stem = "aux_share_best" if best else "aux_share"
        written[stem] = overlay_ratio({name: groups_by_table[name] for name in OVERLAY},
                                      exp_dir / f"{stem}.png", suffix=suffix, footer=prov.line())
    shared = sum(len(parse_feeds(f)) > 1 for f in results.get("feeds", pd.Series(dtype=object)))
    summary = (f"{len(results)} distinct trials fill the rows of {len(tables)} tables; "
               f"{shared} of them feed more than one table (column `feeds` of results.parquet).")
    written.update(_write_combined(tables, exp_dir, formats, best, summary, prov))
    return written


def _write_combined(tables: dict[str, Table], exp_dir: Path, formats: Iterable[str], best: bool,
                    summary: str, prov: Provenance) -> dict[str, Path]:
    stem = TABLE_BEST_STEM if best else TABLE_STEM
    label = "_best" if best else ""
    written: dict[str, Path] = {"provenance": prov.write(exp_dir)}
    for fmt in dict.fromkeys(FORMATS[f] for f in formats):
        path = exp_dir / f"{stem}.{fmt}"
        if fmt == "md":
            text = f"{prov.markdown()}\n\n{summary}\n\n" + "\n".join(f"<!-- {name}/ -->\n{to_markdown(t)}"
                                                                       for name, t in tables.items())
        elif fmt == "tex":
            text = f"% {prov.markdown()}\n% {summary}\n" + "\n".join(to_latex(t, label=name + label)
                                                                      for name, t in tables.items())
        elif fmt == "csv":
            frames = [t.data.assign(table=name) for name, t in tables.items()]
            text = pd.concat(frames, ignore_index=True).to_csv(index=False)
        else:
            pd.concat([t.data.assign(table=name) for name, t in tables.items()], ignore_index=True).to_parquet(path, index=False)
            written[fmt] = path
            continue
        path.write_text(text, encoding="utf-8")
        written[fmt] = path
    return written
