"""The table model: what a report table holds (cells with their marks, columns, notes, the
machine-readable rows) and how a value is shown in a cell. Built by table_builders.py, rendered
by table_render.py; every renderer shows the same cells and the same marks.

Values are percent with two decimals. In each block (one per `across` combination, e.g. per
backbone, as in the paper) the best mean of a metric column is bold and the second best
underlined; means that tie at the shown precision all get the mark, and "second" is the next
distinct value below the best.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from sspa_ray.config import value_text
from sspa_ray.labels import CLASSES
from sspa_ray.outputs import BEST_BY, Word
from sspa_ray.report.aggregate import Group
from sspa_ray.report.significance import mean_ci
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


class Mark(Word):
    """A metric cell's rank in its column of a block (bold / underlined); ties share it."""

    BEST = "best"
    SECOND = "second"
    NONE = ""


@dataclass
class Cell:
    text: str
    mark: Mark = Mark.NONE
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
    grids: list[Table] = field(default_factory=list)


def format_value(key: str, value: Any) -> str:
    """`value` of `key` in a table cell: config.value_text, but a ✓ (or blank) for a switch and
    data.aux_ratio in percent, as the paper's tables show them."""
    if isinstance(value, bool):
        return CHECK if value else ""
    if key == "data.aux_ratio" and value is not None:
        return f"{value * 100:g}"
    return value_text(value)

def row_title(spec: AblationSpec, row: int) -> str:
    return spec.row_name(row) if 0 <= row < len(spec.rows) else f"row {row}"


# A preset labels its DCJT row for the relabelled aux list our annotator approximates; a run given
# DCJT's published list (--set dcjt.aux_labels=PATH, a results.parquet column) is labelled for it.
APPROXIMATED_LABELS, PUBLISHED_LABELS = "approx. labels", "published labels"


def labels_as_run(spec: AblationSpec, results: pd.DataFrame) -> AblationSpec:
    """`spec` with its row labels as `results` ran them: a DCJT row whose every trial read DCJT's
    published list says "published labels" where the preset says "approx. labels"."""
    if not {"row", "method.name", "dcjt.aux_labels"} <= set(results.columns):
        return spec
    labels = list(spec.labels)
    for row, trials in results.groupby("row"):
        index = int(row)
        label = labels[index] if 0 <= index < len(labels) else None
        listed = all(method == "dcjt" and isinstance(path, str) and path
                     for method, path in zip(trials["method.name"], trials["dcjt.aux_labels"], strict=True))
        if label and listed:
            labels[index] = label.replace(APPROXIMATED_LABELS, PUBLISHED_LABELS)
    return replace(spec, labels=labels)


def pct(x: float) -> float:
    return round(x * 100, 2)


def stat_text(stat, *, with_n: bool = True) -> str:
    """The mean; with two seeds also ± std, from CI_MIN_N seeds on the 95% CI; one seed: the value alone."""
    if stat.n == 0:
        return ""
    text = f"{pct(stat.mean):.2f}"
    ci = mean_ci(stat.values)
    if ci is not None:
        text += f" [{pct(ci[0]):.2f}, {pct(ci[1]):.2f}]"
    elif stat.std is not None:
        text += f" ± {pct(stat.std):.2f}"
    return text + (f" (n={stat.n})" if with_n and stat.n > 1 else "")

def rank_marks(values: Sequence[float | None]) -> list[Mark]:
    """'best' / 'second' / '' for each value (higher is better); ties share the mark."""
    distinct = sorted({v for v in values if v is not None}, reverse=True)
    best = distinct[0] if distinct else None
    second = distinct[1] if len(distinct) > 1 else None
    return [Mark.BEST if v is not None and v == best else Mark.SECOND if v is not None and v == second else Mark.NONE
            for v in values]

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
