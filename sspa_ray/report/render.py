"""Re-render an experiment's tables and plots from what it stored, without re-running it."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from sspa_ray.config import KEYS
from sspa_ray.defaults import make_config
from sspa_ray.errors import RunDirError
from sspa_ray.outputs import METRICS, PLAN_FILE, REPORT_STEM, SPEC_FILE, TABLE_BEST_STEM, TABLE_STEM, Kind, Status
from sspa_ray.report.aggregate import NOT_A_CONFIGURATION, aggregate, config_value, read_results
from sspa_ray.report.claims import check_claims, claims_view, write_claims
from sspa_ray.report.html import Part, write_report
from sspa_ray.report.plots import OVERLAY, overlay_ratio, plot_ablation
from sspa_ray.report.provenance import Provenance, provenance
from sspa_ray.report.relabel import plot_relabelling
from sspa_ray.report.selection import selection_figures
from sspa_ray.report.table_builders import ablation_table, per_class_table, tune_table
from sspa_ray.report.table_model import KEPT_COLUMNS, RECALL_COLUMNS, Table, format_value, labels_as_run, row_title
from sspa_ray.report.table_render import to_csv, to_latex, to_markdown
from sspa_ray.specs.ablation import AblationSpec, load_ablation
from sspa_ray.specs.suite import Suite, is_suite, load_suite, parse_feeds

TABLE_FORMATS = {"md": "md", "csv": "csv", "tex": "tex", "latex": "tex", "parquet": "parquet"}


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
    """Write table.{md,csv,tex}, the claims, the plots and report.html into `exp_dir` (table_best.*,
    claims_best.* and report_best.html for metric="best").

    A ``--preset paper`` experiment also gets one folder per table (table_5/table.md, ...).

    Reads exp_dir/results.parquet, exp_dir/spec.yaml (ablations) and exp_dir/experiment.json.
    Returns the written files: keys "md", "csv", "tex", "parquet", "html", "provenance" and one per
    plot and claims file.
    """
    exp_dir = Path(exp_dir)
    if metric not in ("final", "best"):
        raise ValueError(f"metric must be 'final' or 'best', not {metric!r}")
    unknown = [f for f in formats if f not in TABLE_FORMATS]
    if unknown:
        raise ValueError(f"unknown table format {unknown[0]!r}; choose from {', '.join(TABLE_FORMATS)}")
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
    prov = provenance(results, experiment)
    written = _write_all(table, exp_dir, formats, best, exp_dir.name, prov)
    varied = [k for k in KEYS if k in results and k not in NOT_A_CONFIGURATION and results[k].astype(str).nunique() > 1]

    def describe(record: dict[str, Any]) -> str:
        return ", ".join(f"{k}={format_value(k, config_value(k, record.get(k)))}" for k in varied) or "the configuration"

    written["html"] = _write_html(exp_dir, title, prov, [Part(exp_dir.name, table)], results, experiment, describe, best)
    return written


def _render_ablation(spec: AblationSpec, exp_dir: Path, results: pd.DataFrame, experiment: dict[str, Any],
                     target: str, formats: Iterable[str], best: bool) -> dict[str, Path]:
    """The preset's table, its plots and its claims' verdicts."""
    spec = labels_as_run(spec, results)
    prov = provenance(results, experiment)
    part, written, _ = _ablation_outputs(spec, results, target, experiment, exp_dir, best, prov)
    written.update(_write_all(part.table, exp_dir, formats, best, spec.name, prov))
    written["html"] = _write_html(exp_dir, spec.title, prov, [part], results, experiment,
                                  lambda record: _row_text(spec, target, record), best)
    return written


def _row_text(spec: AblationSpec, target: str, record: dict[str, Any]) -> str:
    """A trial's row of the preset, with its `across` values: "SSM + D_T fixed, Backbone arm"."""
    name = row_title(spec, int(record.get("row", -1)))
    across = [f"{k}={format_value(k, config_value(k, record.get(k)))}" for k in spec.active_across(target)]
    return ", ".join([name, *across])


def _write_html(exp_dir: Path, title: str, prov: Provenance, parts: list[Part], results: pd.DataFrame,
                experiment: dict[str, Any], describe, best: bool, figures: dict[str, Path] | None = None) -> Path:
    """report.html (report_best.html for best-epoch metrics): the page that holds every output."""
    stem = REPORT_STEM + ("_best" if best else "")
    return write_report(exp_dir / f"{stem}.html", title=title + (" (best epoch)" if best else ""), provenance=prov,
                        parts=parts, results=results, experiment=experiment, describe=describe, figures=figures or {})


def _write_all(table: Table, out_dir: Path, formats: Iterable[str], best: bool, label: str,
               prov: Provenance) -> dict[str, Path]:
    """table.{md,csv,tex,parquet} (table_best.* with its own LaTeX label) and provenance.json."""
    stem = TABLE_BEST_STEM if best else TABLE_STEM
    written: dict[str, Path] = {"provenance": prov.write(out_dir)}
    for fmt in dict.fromkeys(TABLE_FORMATS[f] for f in formats):
        path = out_dir / f"{stem}.{fmt}"
        _write(table, fmt, path, label + ("_best" if best else ""), prov)
        written[fmt] = path
    return written


def _ablation_outputs(spec: AblationSpec, results: pd.DataFrame, target: str, experiment: dict[str, Any],
                      out_dir: Path, best: bool, prov: Provenance) -> tuple[Part, dict[str, Path], list]:
    """The table, claims and plots of one preset, as `ablate --preset NAME` renders them: its part
    of report.html, the files written (plots, claims) and the groups."""
    has_recall = not best and all(c in results.columns for c in RECALL_COLUMNS)
    extra = [c for c in (*RECALL_COLUMNS, *KEPT_COLUMNS) if c in results.columns] if not best else []
    prefix = "best." if best else ""
    groups = aggregate(results, spec.metrics, prefix=prefix, expected=_expected(spec, target, experiment),
                       extra_columns=extra)
    table = ablation_table(spec, groups, target, best=best)
    figures = plot_ablation(spec, groups, out_dir, target=target, best=best, has_recall=has_recall, footer=prov.line())
    if not best:
        figures.update(selection_figures(spec, results, out_dir, experiment, footer=prov.line()))
        figures.update(plot_relabelling(spec, results, out_dir, footer=prov.line()))
    verdicts = check_claims(spec, results, target, prefix=prefix)
    written = {**figures, **write_claims(spec, verdicts, out_dir, best=best, provenance=prov)}
    rows = [g for g in groups if g.row >= 0]
    per_class = [per_class_table(spec, rows, RECALL_COLUMNS, "Test recall per class (%), final epoch"),
                 per_class_table(spec, rows, KEPT_COLUMNS, "Share of each aux class (by its given label) that "
                                                           "SSM kept at the end of selection (%)")]
    part = Part(spec.name, table, claims_view(verdicts, spec.row_name), figures, [t for t in per_class if t])
    return part, written, groups


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
    parts: list[Part] = []
    groups_by_table = {}
    rows_of = {name: table_rows(results, name) for name in suite.tables}
    specs = {name: labels_as_run(spec, rows_of[name]) for name, spec in suite.tables.items()}
    suffix = " (best epoch)" if best else ""
    for name, spec in specs.items():
        folder = exp_dir / name
        folder.mkdir(exist_ok=True)
        (folder / SPEC_FILE).write_text(suite.texts[name], encoding="utf-8")
        rows = rows_of[name]
        prov = provenance(rows, experiment)
        part, files, groups = _ablation_outputs(spec, rows, target, experiment, folder, best, prov)
        for fmt, path in _write_all(part.table, folder, formats, best, spec.name, prov).items():
            written[f"{name}/{fmt}"] = path
        written.update({f"{name}/{plot}": path for plot, path in files.items()})
        tables[name] = part.table
        part.anchor = name
        parts.append(part)
        groups_by_table[name] = (spec, [g for g in groups if g.row >= 0])
    prov = provenance(results, experiment)
    across: dict[str, Path] = {}
    if all(name in groups_by_table for name in OVERLAY):
        stem = "aux_share_best" if best else "aux_share"
        across[stem] = overlay_ratio({name: groups_by_table[name] for name in OVERLAY},
                                     exp_dir / f"{stem}.png", suffix=suffix, footer=prov.line())
    written.update(across)
    shared = sum(len(parse_feeds(f)) > 1 for f in results.get("feeds", pd.Series(dtype=object)))
    summary = (f"{len(results)} distinct trials fill the rows of {len(tables)} tables; "
               f"{shared} of them feed more than one table (column `feeds` of results.parquet).")
    written.update(_write_combined(tables, exp_dir, formats, best, summary, prov))

    def describe(record: dict[str, Any]) -> str:
        return "; ".join(f"{name}: {specs[name].row_name(row)}" for name, row in parse_feeds(record.get("feeds"))
                         if name in specs) or "no table"

    title = f"{experiment.get('name') or exp_dir.name}: the paper's tables on {target}"
    written["html"] = _write_html(exp_dir, title, prov, parts, results, experiment, describe, best, across)
    return written


def _write_combined(tables: dict[str, Table], exp_dir: Path, formats: Iterable[str], best: bool,
                    summary: str, prov: Provenance) -> dict[str, Path]:
    stem = TABLE_BEST_STEM if best else TABLE_STEM
    label = "_best" if best else ""
    written: dict[str, Path] = {"provenance": prov.write(exp_dir)}
    for fmt in dict.fromkeys(TABLE_FORMATS[f] for f in formats):
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
