"""Figures of an ablation, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Every figure is written as PNG and as PDF (for papers), and shows every metric of the preset:

- grid layout (Table 7): heat maps over the two grid keys, rows in the table's order, on a colour
  scale of at least MIN_COLOUR_SPAN points (named on the colour bar), so that tiny differences
  are not shown as the full colour range;
- ratio layout (Tables 8, 9): each metric against the aux share, ours with the paper's;
- list layout with one numeric key (Table 6): each metric against that key;
- modules layout (Table 5): the metrics of each module pattern as bars from 0, and, when
  results.parquet has ``recall.<class>`` columns, the per-class recall of each pattern;
- ``--preset paper``: Tables 8 and 9 in one figure, SSPA-JT against direct merging.

Error bars show what the tables' cells show: the 95% confidence interval of the mean (Student's
t, clipped to 0-100) from three seeds on, ± the std with two, none with one; each legend's title
says which. Legends sit outside the axes, so they never cover data. Every figure's footer is the provenance line
(report/provenance.py): the data, the --set overrides, the seeds, the schedule, the code.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from sspa_ray.labels import CLASSES
from sspa_ray.report.aggregate import Group
from sspa_ray.report.significance import CI_MIN_N, CONFIDENCE, mean_ci
from sspa_ray.report.table_model import KEY_TITLES, METRIC_TITLES, RECALL_COLUMNS, format_value, row_title, split_blocks
from sspa_ray.specs.ablation import AblationSpec
from sspa_ray.specs.layout import Layout

FIGURE_FORMATS = ("png", "pdf")
# The narrowest colour range of a heat map, in percentage points.
MIN_COLOUR_SPAN = 10.0
# Tables whose rows are SSPA-JT and direct merging over the same aux shares (--preset paper).
OVERLAY = {"table_8": "SSPA-JT", "table_9": "direct merging"}


def math_text(text: str) -> str:
    """D_T as a subscript in matplotlib's mathtext."""
    return text.replace("D_T", "$D_T$")


def _block_name(spec: AblationSpec, block: list[Group]) -> str:
    return ", ".join(f"{KEY_TITLES.get(k, k)} {format_value(k, block[0].config.get(k))}" for k in spec.across) or "ours"


def _group_stat(group: Group, metric: str):
    return group.stats[metric] if metric in group.stats else group.extra.get(metric)


def _mean(group: Group, metric: str) -> float:
    """The mean in percent; NaN without a value."""
    stat = _group_stat(group, metric)
    return stat.mean * 100 if stat is not None and stat.n else np.nan


def mean_and_bar(group: Group, metric: str) -> tuple[float, float, float]:
    """The mean and its error bar below and above it, in percent, as the table's cell gives them:
    the CI of the mean from CI_MIN_N seeds on, ± the std with two, NaN (no bar) with one."""
    stat = _group_stat(group, metric)
    if stat is None or not stat.n:
        return np.nan, np.nan, np.nan
    mean = stat.mean * 100
    ci = mean_ci(stat.values)
    if ci is not None:
        return mean, mean - ci[0] * 100, ci[1] * 100 - mean
    if stat.std is not None:
        return mean, stat.std * 100, stat.std * 100
    return mean, np.nan, np.nan


def _bars(groups: list[Group], metric: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Means and the (2, N) error bars of matplotlib's yerr, or None where no group has one."""
    mean, below, above = np.array([mean_and_bar(g, metric) for g in groups]).T
    err = np.vstack([below, above])
    return mean, (err if np.isfinite(err).any() else None)


def error_bar_title(groups: list[Group], metrics) -> str:
    """What the error bars are, for the legend's title: the tables' intervals, by the seeds there are."""
    ns = {_group_stat(g, m).n for g in groups for m in metrics if _group_stat(g, m) is not None}
    parts = []
    if any(n >= CI_MIN_N for n in ns):
        parts.append(f"{CONFIDENCE:.0%} CI of the mean (n ≥ {CI_MIN_N})")
    if 2 in ns:
        parts.append("± std (n = 2)")
    return "error bars: " + "; ".join(parts) if parts else "one seed: no error bars"


def _legend(ax, **kwargs) -> None:
    """The legend to the right of the axes, never over the data."""
    legend = ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)
    legend.get_title().set_fontsize(7)


def save_figure(fig: Figure, path: Path, footer: str, *, formats=FIGURE_FORMATS, dpi: int = 120) -> Path:
    """Write `path` (PNG) and the same figure in the other `formats` beside it, with `footer` (the
    provenance line) under the axes; return the PNG."""
    fig.tight_layout()
    width = max(40, int(fig.get_figwidth() * 19))  # characters per line at 6 pt
    fig.text(0.01, 0.0, textwrap.fill(f"Data: {footer}", width), ha="left", va="top", fontsize=6, color="dimgrey")
    for fmt in formats:
        fig.savefig(path.with_suffix(f".{fmt}"), dpi=dpi, bbox_inches="tight")
    return path


def _colour_range(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 100.0
    hi = min(100.0, math.ceil(finite.max()))
    lo = max(0.0, min(math.floor(finite.min()), hi - MIN_COLOUR_SPAN))
    return lo, max(hi, lo + MIN_COLOUR_SPAN)


def heatmap(spec: AblationSpec, groups: list[Group], path: Path, *, suffix: str, footer: str) -> Path:
    """One heat map per metric (rows) and block (columns); grid rows top-down in the table's order."""
    row_key, col_key = spec.grid
    blocks = split_blocks(groups, spec.across)
    metrics = spec.metrics
    fig = Figure(figsize=(4.4 * len(blocks), 3.6 * len(metrics)))
    axes = np.atleast_2d(fig.subplots(len(metrics), len(blocks), squeeze=False))
    for i, metric in enumerate(metrics):
        label = METRIC_TITLES.get(metric, metric) + suffix
        for ax, block in zip(axes[i], blocks, strict=True):
            rows = list(dict.fromkeys(g.config[row_key] for g in block))
            cols = list(dict.fromkeys(g.config[col_key] for g in block))
            grid = np.full((len(rows), len(cols)), np.nan)
            for g in block:
                grid[rows.index(g.config[row_key]), cols.index(g.config[col_key])] = _mean(g, metric)
            lo, hi = _colour_range(grid)
            cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
            image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=lo, vmax=hi, origin="upper", aspect="auto")
            for (r, c), value in np.ndenumerate(grid):
                light = np.isnan(value) or value >= (lo + hi) / 2
                ax.text(c, r, "n/a" if np.isnan(value) else f"{value:.2f}", ha="center", va="center",
                        color="black" if light else "white", fontsize=8)
            ax.set_xticks(range(len(cols)), [format_value(col_key, v) for v in cols])
            ax.set_yticks(range(len(rows)), [format_value(row_key, v) for v in rows])
            ax.set_xlabel(KEY_TITLES.get(col_key, col_key))
            ax.set_ylabel(KEY_TITLES.get(row_key, row_key))
            ax.set_title((_block_name(spec, block) + ", " if spec.across else "") + label, fontsize=9)
            fig.colorbar(image, ax=ax, label=f"{label} (%), scale {lo:g}-{hi:g}")
    return save_figure(fig, path, footer)


def _x_axis(ax, key: str, xs: list[float]) -> None:
    if key == "data.aux_ratio":
        ax.set_xscale("symlog", linthresh=1)
        ticks = sorted(set(xs))
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlabel(KEY_TITLES.get(key, key))


def against_key(spec: AblationSpec, groups: list[Group], key: str, path: Path, *, suffix: str, target: str,
                footer: str) -> Path:
    """Each metric against a numeric row key (one panel each), one line per block, the paper's dashed."""
    scale = 100 if key == "data.aux_ratio" else 1
    metrics = spec.metrics
    fig = Figure(figsize=(6.5, 3.0 * len(metrics)))
    axes = np.atleast_1d(fig.subplots(len(metrics), 1, squeeze=False)[:, 0])
    for ax, metric in zip(axes, metrics, strict=True):
        for block in split_blocks(groups, spec.across):
            block = sorted(block, key=lambda g: g.config[key])
            x = np.array([g.config[key] * scale for g in block], dtype=float)
            y, err = _bars(block, metric)
            line = ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=_block_name(spec, block))
            combo = {k: block[0].config.get(k) for k in spec.across}
            paper = [spec.reference.lookup(target, combo, g.row) for g in block]
            paper_y = np.array([np.nan if not p or p.get(metric) is None else p[metric] for p in paper])
            if np.isfinite(paper_y).any():
                keep = np.isfinite(paper_y)
                ax.plot(x[keep], paper_y[keep], linestyle="--", marker="x", color=line.lines[0].get_color(),
                        label=f"paper, {_block_name(spec, block)}")
        _x_axis(ax, key, [g.config[key] * scale for g in groups])
        ax.set_ylabel(f"{METRIC_TITLES.get(metric, metric)}{suffix} (%)")
        ax.grid(alpha=0.3)
        _legend(ax, title=error_bar_title(groups, [metric]))
    axes[0].set_title(math_text(spec.title), fontsize=9)
    return save_figure(fig, path, footer)


def overlay_ratio(tables: dict[str, tuple[AblationSpec, list[Group]]], path: Path, *, suffix: str, footer: str) -> Path:
    """SSPA-JT (Table 8) against direct merging (Table 9) over the aux share, per metric."""
    first_spec = next(iter(tables.values()))[0]
    metrics = [m for m in first_spec.metrics if all(m in spec.metrics for spec, _ in tables.values())]
    fig = Figure(figsize=(6.5, 3.0 * len(metrics)))
    axes = np.atleast_1d(fig.subplots(len(metrics), 1, squeeze=False)[:, 0])
    styles = dict(zip(tables, ("-", "--"), strict=True))
    colours: dict[str, str] = {}
    for ax, metric in zip(axes, metrics, strict=True):
        xs = []
        for name, (spec, groups) in tables.items():
            for block in split_blocks(groups, spec.across):
                block = sorted(block, key=lambda g: g.config["data.aux_ratio"])
                x = np.array([g.config["data.aux_ratio"] * 100 for g in block], dtype=float)
                y, err = _bars(block, metric)
                where = _block_name(spec, block)
                line = ax.errorbar(x, y, yerr=err, marker="o", capsize=3, linestyle=styles[name],
                                   color=colours.get(where), label=f"{OVERLAY[name]}, {where}")
                colours.setdefault(where, line.lines[0].get_color())
                xs += list(x)
        _x_axis(ax, "data.aux_ratio", xs)
        ax.set_ylabel(f"{METRIC_TITLES.get(metric, metric)}{suffix} (%)")
        ax.grid(alpha=0.3)
        _legend(ax, title=error_bar_title([g for _, gs in tables.values() for g in gs], [metric]))
    axes[0].set_title("SSPA-JT (Table 8) and direct merging (Table 9) over the aux share", fontsize=9)
    return save_figure(fig, path, footer)


def module_bars(spec: AblationSpec, groups: list[Group], path: Path, *, suffix: str, footer: str) -> Path:
    """Each metric of each module pattern as bars, one panel per block."""
    blocks = split_blocks(groups, spec.across)
    fig = Figure(figsize=(7.5, 3.0 * len(blocks)))
    axes = np.atleast_1d(fig.subplots(len(blocks), 1, squeeze=False)[:, 0])
    width = 0.8 / len(spec.metrics)
    for ax, block in zip(axes, blocks, strict=True):
        x = np.arange(len(block))
        for j, metric in enumerate(spec.metrics):
            y, err = _bars(block, metric)
            ax.bar(x + (j - (len(spec.metrics) - 1) / 2) * width, y, width, yerr=err,
                   label=METRIC_TITLES.get(metric, metric) + suffix, capsize=2)
        ax.set_xticks(x, [math_text(row_title(spec, g.row)) for g in block], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("%")
        ax.set_title(_block_name(spec, block), fontsize=9)
        ax.set_ylim(0.0, 100.0)  # bars start at 0: a cut axis would exaggerate the differences
        _legend(ax, title=error_bar_title(block, spec.metrics))
    return save_figure(fig, path, footer)


def per_class_recall(spec: AblationSpec, groups: list[Group], path: Path, *, footer: str) -> Path:
    """Per-class recall (final epoch) of each module pattern as a heat map, one panel per block."""
    blocks = split_blocks(groups, spec.across)
    fig = Figure(figsize=(7.0, 0.45 * max(len(b) for b in blocks) * len(blocks) + 1.5))
    axes = np.atleast_1d(fig.subplots(len(blocks), 1, squeeze=False)[:, 0])
    for ax, block in zip(axes, blocks, strict=True):
        grid = np.array([[_mean(g, column) for column in RECALL_COLUMNS] for g in block])
        cmap = matplotlib.colormaps["magma"].with_extremes(bad="lightgrey")
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=100, aspect="auto")
        for (r, c), value in np.ndenumerate(grid):
            ax.text(c, r, "n/a" if np.isnan(value) else f"{value:.0f}", ha="center", va="center",
                    color="black" if np.isnan(value) or value >= 60 else "white", fontsize=7)
        ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=30, ha="right", fontsize=7)
        ax.set_yticks(range(len(block)), [math_text(row_title(spec, g.row)) for g in block], fontsize=7)
        ax.set_title(f"Per-class recall (%), {_block_name(spec, block)}", fontsize=9)
        fig.colorbar(image, ax=ax, label="recall (%), scale 0-100")
    return save_figure(fig, path, footer)


def _grid_plots(spec, groups, stem, out_dir, *, suffix, target, footer, best, has_recall) -> dict[str, Path]:
    return {f"{stem}_heatmap": heatmap(spec, groups, out_dir / f"{stem}_heatmap.png", suffix=suffix, footer=footer)}


def _ratio_plots(spec, groups, stem, out_dir, *, suffix, target, footer, best, has_recall) -> dict[str, Path]:
    return {stem: against_key(spec, groups, "data.aux_ratio", out_dir / f"{stem}.png", suffix=suffix, target=target,
                              footer=footer)}


def _list_plots(spec, groups, stem, out_dir, *, suffix, target, footer, best, has_recall) -> dict[str, Path]:
    """A line plot against the rows' one key where it is numeric; nothing for other lists."""
    numeric_keys = [k for k in spec.row_keys() if all(_is_number(g.config.get(k)) for g in groups)]
    if len(numeric_keys) != 1 or len(spec.row_keys()) != 1:
        return {}
    return {stem: against_key(spec, groups, numeric_keys[0], out_dir / f"{stem}.png", suffix=suffix, target=target,
                              footer=footer)}


def _modules_plots(spec, groups, stem, out_dir, *, suffix, target, footer, best, has_recall) -> dict[str, Path]:
    plots = {stem: module_bars(spec, groups, out_dir / f"{stem}.png", suffix=suffix, footer=footer)}
    if has_recall and not best:
        plots[f"{stem}_per_class_recall"] = per_class_recall(spec, groups, out_dir / f"{stem}_per_class_recall.png",
                                                             footer=footer)
    return plots


# The figures of each layout (specs/layout.py), beside its table.
LAYOUT_PLOTS = {Layout.GRID: _grid_plots, Layout.RATIO: _ratio_plots, Layout.LIST: _list_plots,
                Layout.MODULES: _modules_plots}


def plot_ablation(spec: AblationSpec, groups: list[Group], out_dir: Path, *, target: str, footer: str,
                  best: bool = False, has_recall: bool = False) -> dict[str, Path]:
    """Every figure the preset's layout has, written as PNG and PDF into `out_dir` (PNG paths returned)."""
    groups = [g for g in groups if g.row >= 0]
    if not groups:
        return {}
    return LAYOUT_PLOTS[spec.layout](spec, groups, spec.name + ("_best" if best else ""), out_dir,
                                     suffix=" (best epoch)" if best else "", target=target, footer=footer, best=best,
                                     has_recall=has_recall)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
