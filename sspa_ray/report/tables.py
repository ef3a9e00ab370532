"""Tables laid out like the paper's, rendered as Markdown, CSV, LaTeX (booktabs) and HTML (report.html).

A :class:`Table` is built once from the aggregated groups and then rendered; every renderer
shows the same cells and the same marks. Values are percent with two decimals. In each block
(one per `across` combination, e.g. per backbone, as in the paper) the best mean of a metric
column is bold and the second best underlined; means that tie at the shown precision all get
the mark, and "second" is the next distinct value below the best.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd

from sspa_ray.config import EXECUTION_KEYS
from sspa_ray.errors import ConfigError
from sspa_ray.labels import CLASSES
from sspa_ray.outputs import BEST_BY, METRICS, Status
from sspa_ray.report.aggregate import STATUSES, Group, normalize
from sspa_ray.report.importance import importance_note
from sspa_ray.report.significance import CI_MIN_N, CONFIDENCE, SIGNIFICANCE_LEVEL, holm, mean_ci, paired_p, significant, welch_p
from sspa_ray.specs.ablation import MODULE_TITLES, AblationSpec

KEY_TITLES = {
    **MODULE_TITLES,
    "moe.experts": "k",
    "pam.alpha": "α",
    "pam.beta": "β",
    "data.aux_ratio": "Aux (%)",
    "data.aux": "Aux set",
    "model.backbone": "Backbone",
}
# results.parquet's per-class columns of a completed trial: test recall, and the aux share SSM kept.
RECALL_COLUMNS = tuple(f"recall.{name}" for name in CLASSES)
KEPT_COLUMNS = tuple(f"kept.{name}" for name in CLASSES)
METRIC_TITLES = {"accuracy": "Acc.", "macro_precision": "Macro-P", "macro_recall": "Macro-R", "macro_f1": "Macro-F1"}
# What a best-epoch table's title says: each trial's epoch was picked on the test set (metrics.json "best").
BEST_EPOCH_TITLE = f" (best epoch, chosen by test-set {BEST_BY})"
CHECK = "✓"
MISSING = "–"
# Keys that do not change which experiment a paper number belongs to: the seed, how fast a run
# goes, and the pretrained weights' path (the paper's were MS-Celeb-1M; a path names no content).
NOT_COMPARED_WITH_PAPER = frozenset({"train.seed", "train.precision", "train.channels_last", "model.pretrained",
                                     "data.root"}) | EXECUTION_KEYS


@dataclass
class Cell:
    text: str
    mark: str = ""          # "best" | "second" | ""
    star: bool = False      # significantly different from the baseline row


@dataclass
class Column:
    title: str
    align: str = "l"        # l | c | r
    merge_repeats: bool = False   # blank a value equal to the one above it (paper-style groups)


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[list[Cell]]
    block_starts: set[int]
    notes: list[str]
    data: pd.DataFrame               # one row per configuration, machine-readable (CSV, parquet)
    grids: list["Table"] = field(default_factory=list)


# ---- formatting -----------------------------------------------------------------------------

def format_value(key: str, value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return CHECK if value else ""
    if key == "data.aux_ratio":
        return f"{value * 100:g}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def row_title(spec: AblationSpec, row: int) -> str:
    return spec.row_name(row) if 0 <= row < len(spec.rows) else f"row {row}"


def _pct(x: float) -> float:
    return round(x * 100, 2)


def stat_text(stat, *, with_n: bool = True) -> str:
    """The mean; with two seeds also ± std, from CI_MIN_N seeds on the 95% CI; one seed: the value alone."""
    if stat.n == 0:
        return ""
    text = f"{_pct(stat.mean):.2f}"
    ci = mean_ci(stat.values)
    if ci is not None:
        text += f" [{_pct(ci[0]):.2f}, {_pct(ci[1]):.2f}]"
    elif stat.std is not None:
        text += f" ± {_pct(stat.std):.2f}"
    return text + (f" (n={stat.n})" if with_n and stat.n > 1 else "")


def _test(stat, baseline) -> tuple[float | None, str]:
    """The p-value of `stat` against `baseline` and the test used: paired by seed where both rows
    ran the same seeds (each once), Welch's t-test otherwise."""
    if len(set(stat.seeds)) == stat.n and sorted(map(str, stat.seeds)) == sorted(map(str, baseline.seeds)):
        by_seed = dict(zip(stat.seeds, stat.values))
        return paired_p([by_seed[s] for s in baseline.seeds], list(baseline.values)), "paired"
    return welch_p(stat.values, baseline.values), "welch"


def rank_marks(values: Sequence[float | None]) -> list[str]:
    """'best' / 'second' / '' for each value (higher is better); ties share the mark."""
    distinct = sorted({v for v in values if v is not None}, reverse=True)
    best = distinct[0] if distinct else None
    second = distinct[1] if len(distinct) > 1 else None
    return ["best" if v is not None and v == best else "second" if v is not None and v == second else ""
            for v in values]


# ---- building -------------------------------------------------------------------------------

def _metric_block(groups: list[Group], metrics: Sequence[str], baseline: Group | None, tests: set[str] | None = None):
    """Cells, raw p-values and marks of the metric columns for the groups of one block; the tests
    used are added to `tests`. Stars are set once the whole table's p-values are corrected."""
    cells = [[None] * len(metrics) for _ in groups]
    p_values = [[None] * len(metrics) for _ in groups]
    for j, metric in enumerate(metrics):
        shown = [_pct(g.stats[metric].mean) if g.stats[metric].n else None for g in groups]
        marks = rank_marks(shown)
        for i, group in enumerate(groups):
            stat = group.stats[metric]
            p = None
            if baseline is not None and group is not baseline and stat.n:
                p, test = _test(stat, baseline.stats[metric])
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
    for row_cells, row in zip(cells, p_values):
        out.append(adjusted[k:k + len(row)])
        for cell, p in zip(row_cells, out[-1]):
            cell.star = significant(p)
        k += len(row)
    return out


def split_blocks(groups: list[Group], across: dict[str, list[Any]]) -> list[list[Group]]:
    def position(group: Group) -> tuple:
        out = []
        for key, values in across.items():
            value = group.config.get(key)
            out.append(values.index(value) if value in values else len(values))
        return tuple(out)

    ordered = sorted(groups, key=lambda g: (position(g), g.row))  # stable: keeps run order otherwise
    blocks: list[list[Group]] = []
    for group in ordered:
        key = tuple(group.config.get(k) for k in across)
        if blocks and tuple(blocks[-1][0].config.get(k) for k in across) == key:
            blocks[-1].append(group)
        else:
            blocks.append([group])
    return blocks


def _descriptor_keys(spec: AblationSpec) -> list[str]:
    if spec.layout == "grid":
        return list(spec.grid)
    if spec.layout == "list" and any(spec.labels):
        return []
    return spec.row_keys()


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
    descriptor = _descriptor_keys(spec)
    labelled = spec.layout == "list" and any(spec.labels)
    reference_metrics = list(spec.reference.metrics) if target in spec.reference.values else []
    show_status = any(not g.all_completed for g in groups)

    columns = [Column(KEY_TITLES.get(k, k), merge_repeats=True) for k in across]
    if labelled:
        columns.append(Column("Method"))
    for key in descriptor:
        is_bool = any(isinstance(g.config.get(key), bool) for g in groups)
        merge = spec.layout == "grid" and key == spec.grid[0]
        columns.append(Column(KEY_TITLES.get(key, key), "c" if is_bool else "l", merge_repeats=merge))
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
    for block, (cells, _) in zip(blocks, per_block):
        block_starts.add(len(rows))
        for group, metric_cells in zip(block, cells):
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
            notes_errors += [f"{_where(across, combo)}{name}, {e}" for e in group.errors]

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
    if spec.layout == "grid":
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
        if ours != normalize(key, value):
            out.append(f"{key} {format_value(key, ours) or 'off'} (paper {format_value(key, value) or 'off'})")
    return ", ".join(out)


def _where(across, combo) -> str:
    return "".join(f"{KEY_TITLES.get(k, k)} {format_value(k, v)}, " for k, v in combo.items()) if across else ""


def _metric_record(group: Group, metrics, cells, p_adjusted, p_raw=None) -> dict[str, Any]:
    record = {}
    for j, (metric, cell, p) in enumerate(zip(metrics, cells, p_adjusted)):
        stat = group.stats[metric]
        ci = mean_ci(stat.values)
        record[f"{metric}.mean_pct"] = _pct(stat.mean) if stat.n else None
        record[f"{metric}.std_pct"] = _pct(stat.std) if stat.std is not None else None
        record[f"{metric}.ci_low_pct"] = _pct(ci[0]) if ci else None
        record[f"{metric}.ci_high_pct"] = _pct(ci[1]) if ci else None
        record[f"{metric}.n"] = stat.n
        record[f"{metric}.p_value"] = p_raw[j] if p_raw is not None else p
        record[f"{metric}.p_holm"] = p
        record[f"{metric}.mark"] = cell.mark
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
    shown = {k: (_pct(g.stats[metric].mean) if g.stats[metric].n else None) for k, g in by_cell.items()}
    marks = dict(zip(shown, rank_marks(list(shown.values()))))
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
    for group, metric_cells, ps in zip(groups, cells, p_values):
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


# ---- rendering ------------------------------------------------------------------------------

def _visible(table: Table, i: int, j: int) -> str:
    """Cell text, blanked where the paper groups a repeated value under the first row of a run."""
    text = table.rows[i][j].text
    if table.columns[j].merge_repeats and i not in table.block_starts and table.rows[i - 1][j].text == text:
        return ""
    return text


def _styled(cell: Cell, text: str, *, best: str, second: str, star: str) -> str:
    """Best / second-best marks and the significance star, in one output format's markup."""
    if text and cell.mark == "best":
        text = best.format(text)
    elif text and cell.mark == "second":
        text = second.format(text)
    return text + (star if cell.star else "")


def to_markdown(table: Table, *, heading: bool = True) -> str:
    def md(text: str) -> str:
        return text.replace("|", "\\|").replace("*", "\\*")

    def styled(cell: Cell, text: str) -> str:
        return _styled(cell, md(text), best="**{}**", second="<u>{}</u>", star="\\*")

    align = {"l": ":--", "c": ":-:", "r": "--:"}
    out = [f"### {md(table.title)}", ""] if heading else []
    out.append("| " + " | ".join(md(c.title) for c in table.columns) + " |")
    out.append("|" + "|".join(align[c.align] for c in table.columns) + "|")
    for i, row in enumerate(table.rows):
        out.append("| " + " | ".join(styled(cell, _visible(table, i, j)) for j, cell in enumerate(row)) + " |")
    if table.notes:
        out.append("")
        out += [f"- {md(note)}" for note in table.notes]
    for grid in table.grids:
        out += ["", f"#### {md(grid.title)}", "", to_markdown(grid, heading=False)]
    return "\n".join(out) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"$<$", ">": r"$>$", "±": r"$\pm$", "✓": r"\checkmark", "α": r"$\alpha$", "β": r"$\beta$", "–": "--",
}


def latex_escape(text: str) -> str:
    text = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    return text.replace("D\\_T", r"$\mathcal{D}_T$").replace("(n=", "($n$=")


def _latex_tabular(table: Table) -> list[str]:
    def styled(cell: Cell, text: str) -> str:
        return _styled(cell, latex_escape(text), best=r"\textbf{{{}}}", second=r"\underline{{{}}}", star=r"$^{*}$")

    out = [r"\begin{tabular}{" + "".join(c.align for c in table.columns) + "}", r"\toprule"]
    out.append(" & ".join(latex_escape(c.title) for c in table.columns) + r" \\")
    out.append(r"\midrule")
    for i, row in enumerate(table.rows):
        if i in table.block_starts and i > 0:
            out.append(r"\midrule")
        out.append(" & ".join(styled(cell, _visible(table, i, j)) for j, cell in enumerate(row)) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    return out


def to_latex(table: Table, *, label: str = "", comment: str = "") -> str:
    """A booktabs table; `label` gives \\label{tab:LABEL}, `comment` a % line under the first (the provenance)."""
    out = [r"% Generated by sspa-ray. Needs \usepackage{booktabs} and \usepackage{amssymb} (\checkmark)."]
    out += [f"% {line}" for line in comment.splitlines()]
    out += [r"\begin{table}[htbp]", r"\centering", rf"\caption{{{latex_escape(table.title)}}}"]
    if label:
        out.append(rf"\label{{tab:{label}}}")
    out += _latex_tabular(table)
    if table.notes:
        out.append(r"\par\smallskip{\footnotesize " + r" \\ ".join(latex_escape(n) for n in table.notes) + "}")
    out.append(r"\end{table}")
    for grid in table.grids:
        out += ["", r"\begin{table}[htbp]", r"\centering", rf"\caption{{{latex_escape(grid.title)}}}"]
        out += _latex_tabular(grid)
        out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def to_html(table: Table) -> str:
    """A <table> with its caption and its notes, the marks as <strong>, <u> and <sup>*</sup>."""
    def styled(cell: Cell, text: str) -> str:
        return _styled(cell, html.escape(text), best="<strong>{}</strong>", second="<u>{}</u>", star="<sup>*</sup>")

    out = [f"<table><caption>{html.escape(table.title)}</caption>", "<thead><tr>"]
    out += [f'<th class="{c.align}">{html.escape(c.title)}</th>' for c in table.columns]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(table.rows):
        out.append('<tr class="block">' if i in table.block_starts and i else "<tr>")
        out += [f'<td class="{c.align}">{styled(cell, _visible(table, i, j))}</td>'
                for j, (c, cell) in enumerate(zip(table.columns, row))]
        out.append("</tr>")
    out.append("</tbody></table>")
    if table.notes:
        out.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in table.notes) + "</ul>")
    for grid in table.grids:
        out.append(to_html(grid))
    return "\n".join(out)


def to_csv(table: Table) -> str:
    buffer = io.StringIO()
    table.data.to_csv(buffer, index=False)
    return buffer.getvalue()

