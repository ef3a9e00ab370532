"""The report's three tables, built from the aggregated groups: an ablation preset's table (with
its grids), a search's table, and the per-class table; each metric cell carries its mark and its
star against the baseline row (significance.py picks the test).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from sspa_ray.config import EXECUTION_KEYS
from sspa_ray.errors import ConfigError
from sspa_ray.outputs import BEST_BY, METRICS, Status
from sspa_ray.report.aggregate import STATUSES, Group, config_value
from sspa_ray.report.importance import importance_note
from sspa_ray.report.significance import (
    CI_MIN_N,
    CONFIDENCE,
    SIGNIFICANCE_LEVEL,
    holm,
    mean_ci,
    p_against_baseline,
    significant,
)
from sspa_ray.report.table_model import (
    BEST_EPOCH_TITLE,
    KEY_TITLES,
    METRIC_TITLES,
    MISSING,
    Cell,
    Column,
    Table,
    format_value,
    pct,
    rank_marks,
    row_title,
    split_blocks,
    stat_text,
)
from sspa_ray.specs.ablation import AblationSpec

# Keys that do not change which experiment a paper number belongs to: the seed, how fast a run
# goes, and the pretrained weights' path (the paper's were MS-Celeb-1M; a path names no content).
NOT_COMPARED_WITH_PAPER = frozenset({"train.seed", "train.precision", "train.channels_last", "model.pretrained",
                                     "data.root"}) | EXECUTION_KEYS


def _metric_block(groups: list[Group], metrics: Sequence[str], baseline: Group | None, tests: set[str] | None = None):
    """Cells, raw p-values and marks of the metric columns for the groups of one block; the tests
    used are added to `tests`. Stars are set once the whole table's p-values are corrected."""
    cells = [[None] * len(metrics) for _ in groups]
    p_values = [[None] * len(metrics) for _ in groups]
    for j, metric in enumerate(metrics):
        shown = [pct(g.stats[metric].mean) if g.stats[metric].n else None for g in groups]
        marks = rank_marks(shown)
        for i, group in enumerate(groups):
            stat = group.stats[metric]
            p = None
            if baseline is not None and group is not baseline and stat.n:
                p, test = p_against_baseline(stat, baseline.stats[metric])
                if p is not None and tests is not None:
                    tests.add(test)
            p_values[i][j] = p
            text = stat_text(stat) if stat.n else group.empty_text()
            cells[i][j] = Cell(text, marks[i])
    return cells, p_values

def _correct(cells: list[list[Cell]], p_values: list[list[float | None]]) -> list[list[float | None]]:
    """Holm-adjust every p-value of the table as one family and star the cells below the level."""
    flat = [p for row in p_values for p in row]
    adjusted = holm(flat)
    out, k = [], 0
    for row_cells, row in zip(cells, p_values, strict=True):
        out.append(adjusted[k:k + len(row)])
        for cell, p in zip(row_cells, out[-1], strict=True):
            cell.star = significant(p)
        k += len(row)
    return out

def _metric_notes(best: bool, blocked: bool, groups: list[Group], metrics: Sequence[str], tests: set[str],
                  n_tests: int, baseline_name: str | None) -> list[str]:
    which = (f"best-epoch metrics: each trial's epoch of highest {BEST_BY} on the test set, the set these "
             "metrics are measured on, so the values are optimistic" if best else "final-epoch metrics")
    ns = {g.stats[m].n for g in groups for m in metrics if m in g.stats and g.stats[m].n}
    if ns <= {1}:
        notes = [f"One seed per configuration: {which}, in percent; no spread or significance test is possible."]
    else:
        parts = [f"Mean over seeds of the {which}, in percent; n = seeds"]
        if any(n >= CI_MIN_N for n in ns):
            parts.append(f"[a, b] = {CONFIDENCE:.0%} confidence interval of the mean (Student's t, clipped to "
                         f"0-100), where n >= {CI_MIN_N}")
        if 2 in ns:
            parts.append("± = standard deviation over the two seeds")
        notes = ["; ".join(parts) + "."]
    notes.append("Bold: best, underlined: second best in each metric column"
                 + (" of each block" if blocked else "") + "; tied values all get the mark.")
    if tests:
        how = {"paired": "a t-test paired by seed", "welch": "Welch's t-test"}
        used = " or ".join(how[t] for t in sorted(tests))
        notes.append(f"* p < {SIGNIFICANCE_LEVEL:g} against the baseline row ({baseline_name}) in {used} "
                     f"(paired where both rows ran the same seeds), after Holm's correction over the "
                     f"{n_tests} tests of this table.")
    return notes

def ablation_table(spec: AblationSpec, groups: list[Group], target: str, *, best: bool = False) -> Table:
    metrics = list(spec.metrics)
    across = spec.across
    descriptor = spec.layout.descriptor_keys(spec)
    labelled = spec.layout.labelled(spec)
    reference_metrics = list(spec.reference.metrics) if target in spec.reference.values else []
    show_status = any(not g.all_completed for g in groups)

    columns = [Column(KEY_TITLES.get(k, k), merge_repeats=True) for k in across]
    if labelled:
        columns.append(Column("Method"))
    for key in descriptor:
        is_bool = any(isinstance(g.config.get(key), bool) for g in groups)
        columns.append(Column(KEY_TITLES.get(key, key), "c" if is_bool else "l",
                              merge_repeats=spec.layout.merges(spec, key)))
    suffix = " (best epoch)" if best else ""
    columns += [Column(METRIC_TITLES.get(m, m) + suffix, "r") for m in metrics]
    columns += [Column("Paper " + METRIC_TITLES.get(m, m), "r") for m in reference_metrics]
    if show_status:
        columns.append(Column("Status"))

    rows, records, block_starts, tests, notes_errors, dropped = [], [], set(), set(), [], []
    blocks = split_blocks(groups, across)
    per_block = [_metric_block(block, metrics, next((g for g in block if g.row == spec.baseline), None), tests)
                 for block in blocks]
    all_cells = [c for cells, _ in per_block for c in cells]
    all_p = [p for _, ps in per_block for p in ps]
    adjusted = iter(_correct(all_cells, all_p))
    n_tests = sum(p is not None for ps in all_p for p in ps)
    raw = iter(all_p)
    for block, (cells, _) in zip(blocks, per_block, strict=True):
        block_starts.add(len(rows))
        for group, metric_cells in zip(block, cells, strict=True):
            ps, ps_raw = next(adjusted), next(raw)
            combo = {k: group.config.get(k) for k in across}
            ref = spec.reference.lookup(target, combo, group.row) if reference_metrics else None
            if ref is not None:
                differs = paper_differences(spec, target, group.row, group.config, combo)
                if differs:
                    ref = None
                    dropped.append(differs)
            name = row_title(spec, group.row)
            line = [Cell(format_value(k, group.config.get(k))) for k in across]
            if labelled:
                line.append(Cell(name))
            line += [Cell(format_value(k, group.config.get(k))) for k in descriptor]
            line += metric_cells
            line += [Cell(MISSING if not ref or ref.get(m) is None else f"{ref[m]:.2f}") for m in reference_metrics]
            if show_status:
                line.append(Cell(group.status_text()))
            rows.append(line)
            record = {"row": group.row, "label": name}
            record.update({k: group.config.get(k) for k in [*across, *spec.row_keys()]})
            record.update(_metric_record(group, metrics, metric_cells, ps, ps_raw))
            record.update({f"paper.{m}_pct": (ref or {}).get(m) for m in reference_metrics})
            record.update(_status_record(group))
            records.append(record)
            notes_errors += [f"{_across_prefix(across, combo)}{name}, {e}" for e in group.errors]

    baseline_name = row_title(spec, spec.baseline)
    notes = _metric_notes(best, len(blocks) > 1, groups, metrics, tests, n_tests, baseline_name)
    if reference_metrics:
        notes.append(f"Paper: {spec.reference.source or 'the paper'}, as reported for {target}; {MISSING} = not reported.")
    if dropped:
        shown = "; ".join(dict.fromkeys(dropped))
        notes.append(f"Paper numbers left out ({MISSING}) for {len(dropped)} row(s) that ran another configuration "
                     f"than the paper's: {shown}.")
    notes += _status_notes(groups, notes_errors)
    title = spec.title + (BEST_EPOCH_TITLE if best else "")
    table = Table(title, columns, rows, block_starts, notes, pd.DataFrame.from_records(records))
    if spec.layout.has_grids:
        table.grids = [_grid(spec, block, metrics[0], best) for block in blocks]
    return table

def paper_differences(spec: AblationSpec, target: str, row: int, config: dict[str, Any], combo: dict) -> str:
    """'data.aux_ratio 0.2 (paper 0.1)' for each key where this row's run (`config`) differs from
    the paper's; the rule of both the tables' reference columns and the claims' paper numbers."""
    if not 0 <= row < len(spec.rows):
        return ""
    try:
        paper = spec.paper_config(target, row, combo)
    except ConfigError:  # a preset row that no longer builds has no paper config to compare with
        return ""
    out = []
    for key, value in paper.items():
        if key in NOT_COMPARED_WITH_PAPER or key not in config:
            continue
        ours = config.get(key)
        if ours != config_value(key, value):
            out.append(f"{key} {format_value(key, ours) or 'off'} (paper {format_value(key, value) or 'off'})")
    return ", ".join(out)

def _across_prefix(across, combo) -> str:
    return "".join(f"{KEY_TITLES.get(k, k)} {format_value(k, v)}, " for k, v in combo.items()) if across else ""

def _metric_record(group: Group, metrics, cells, p_adjusted, p_raw=None) -> dict[str, Any]:
    record = {}
    for j, (metric, cell, p) in enumerate(zip(metrics, cells, p_adjusted, strict=True)):
        stat = group.stats[metric]
        ci = mean_ci(stat.values)
        record[f"{metric}.mean_pct"] = pct(stat.mean) if stat.n else None
        record[f"{metric}.std_pct"] = pct(stat.std) if stat.std is not None else None
        record[f"{metric}.ci_low_pct"] = pct(ci[0]) if ci else None
        record[f"{metric}.ci_high_pct"] = pct(ci[1]) if ci else None
        record[f"{metric}.n"] = stat.n
        record[f"{metric}.p_value"] = p_raw[j] if p_raw is not None else p
        record[f"{metric}.p_holm"] = p
        record[f"{metric}.mark"] = cell.mark.value
    return record

def _status_record(group: Group) -> dict[str, Any]:
    record = {status: group.statuses.get(status, 0) for status in STATUSES}
    record["errors"] = "; ".join(group.errors)
    return record

def _status_notes(groups: list[Group], errors: list[str]) -> list[str]:
    notes = [f"Failed trial: {e}" for e in errors]
    if any(g.statuses.get(Status.PENDING) for g in groups):
        notes.append("Pending trials have not reported yet; run `sspa-ray report` again later.")
    return notes

def _grid(spec: AblationSpec, block: list[Group], metric: str, best: bool) -> Table:
    """The block's `metric` as a grid: grid[0] values down, grid[1] values across."""
    row_key, col_key = spec.grid
    row_values = list(dict.fromkeys(g.config.get(row_key) for g in block))
    col_values = list(dict.fromkeys(g.config.get(col_key) for g in block))
    by_cell = {(g.config.get(row_key), g.config.get(col_key)): g for g in block}
    shown = {k: (pct(g.stats[metric].mean) if g.stats[metric].n else None) for k, g in by_cell.items()}
    marks = dict(zip(shown, rank_marks(list(shown.values())), strict=True))
    rows = []
    for rv in row_values:
        line = [Cell(format_value(row_key, rv))]
        for cv in col_values:
            group = by_cell.get((rv, cv))
            if group is None:
                line.append(Cell(MISSING))
            else:
                stat = group.stats[metric]
                line.append(Cell(stat_text(stat, with_n=False) if stat.n else group.empty_text(), marks[(rv, cv)]))
        rows.append(line)
    corner = f"{KEY_TITLES.get(row_key, row_key)} \\ {KEY_TITLES.get(col_key, col_key)}"
    columns = [Column(corner)] + [Column(format_value(col_key, cv), "r") for cv in col_values]
    where = "".join(f", {KEY_TITLES.get(k, k)} {format_value(k, block[0].config.get(k))}" for k in spec.across)
    title = f"{METRIC_TITLES.get(metric, metric)}{' (best epoch)' if best else ''} over {corner}{where}"
    return Table(title, columns, rows, {0}, [], pd.DataFrame())

def tune_table(groups: list[Group], *, title: str, sort_metric: str, mode: str = "max", best: bool = False) -> Table:
    """A plain table of a search: the keys that vary as columns, sorted by the search's metric."""
    keys = [k for k in (groups[0].config if groups else {})
            if len({repr(g.config.get(k)) for g in groups}) > 1]
    metrics = [sort_metric] + [m for m in METRICS if m != sort_metric and m in groups[0].stats] if groups else [sort_metric]

    def order(group: Group):
        mean = group.stats[sort_metric].mean
        return (mean is None, -(mean or 0.0) if mode == "max" else (mean or 0.0))

    groups = sorted(groups, key=order)
    cells, p_values = _metric_block(groups, metrics, None)
    show_status = any(not g.all_completed for g in groups)
    suffix = " (best epoch)" if best else ""
    columns = [Column(KEY_TITLES.get(k, k)) for k in keys]
    columns += [Column(METRIC_TITLES.get(m, m) + suffix, "r") for m in metrics]
    if show_status:
        columns.append(Column("Status"))
    rows, records, errors = [], [], []
    for group, metric_cells, ps in zip(groups, cells, p_values, strict=True):
        line = [Cell(format_value(k, group.config.get(k))) for k in keys] + metric_cells
        if show_status:
            line.append(Cell(group.status_text()))
        rows.append(line)
        record = {k: group.config.get(k) for k in keys}
        record.update(_metric_record(group, metrics, metric_cells, ps))
        record.update(_status_record(group))
        records.append(record)
        name = ", ".join(f"{k}={format_value(k, group.config.get(k))}" for k in keys) or "the configuration"
        errors += [f"{name}, {e}" for e in group.errors]
    notes = _metric_notes(best, False, groups, metrics, set(), 0, None)
    notes.insert(0, f"Sorted by {sort_metric} ({'higher' if mode == 'max' else 'lower'} first).")
    importance = importance_note(groups, keys, sort_metric, mode)
    if importance:
        notes.append(importance)
    if any(g.statuses.get(Status.STOPPED) for g in groups):
        notes.append("Stopped trials (ended early by the scheduler) count with their last reported epoch.")
    notes += _status_notes(groups, errors)
    return Table(title + (BEST_EPOCH_TITLE if best else ""), columns, rows, {0}, notes, pd.DataFrame.from_records(records))

def per_class_table(spec: AblationSpec, groups: list[Group], columns: Sequence[str], title: str) -> Table | None:
    """One row per configuration and one column per class: the mean over seeds of `columns`
    (RECALL_COLUMNS or KEPT_COLUMNS, the groups' extra stats), in percent; None when no row has any."""
    groups = [g for g in groups if any(g.extra.get(c) and g.extra[c].n for c in columns)]
    if not groups:
        return None
    blocks = split_blocks(groups, spec.across)
    head = [Column(KEY_TITLES.get(k, k), merge_repeats=True) for k in spec.across]
    head += [Column("Row"), Column("n", "r")] + [Column(c.split(".", 1)[1], "r") for c in columns]
    rows, block_starts = [], set()
    for block in blocks:
        block_starts.add(len(rows))
        for g in block:
            stats = [g.extra.get(c) for c in columns]
            cells = [Cell(MISSING if not s or not s.n else f"{100 * s.mean:.1f}") for s in stats]
            n = max(s.n for s in stats if s)
            rows.append([Cell(format_value(k, g.config.get(k))) for k in spec.across]
                        + [Cell(row_title(spec, g.row)), Cell(str(n))] + cells)
    return Table(title, head, rows, block_starts, [f"Mean over seeds, in percent; {MISSING} = no value."], pd.DataFrame())
