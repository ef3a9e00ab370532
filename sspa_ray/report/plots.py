"""Figures of an ablation, drawn with matplotlib's Agg canvas (no display, no pyplot state).

- grid layout (Table 7): a heat map of the first metric over the two grid keys;
- ratio layout (Tables 8, 9): the first metric against the aux share, ours with the paper's;
- list layout with one numeric key (Table 6): the first metric against that key;
- modules layout (Table 5): the metrics of each module pattern as bars, and, when
  results.parquet has ``recall.<class>`` columns, the per-class recall of each pattern.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from sspa_ray.labels import CLASSES
from sspa_ray.report.aggregate import Group
from sspa_ray.report.tables import KEY_TITLES, METRIC_TITLES, format_value, row_title, split_blocks
from sspa_ray.specs.ablation import AblationSpec

RECALL_COLUMNS = tuple(f"recall.{name}" for name in CLASSES)


def _block_name(spec: AblationSpec, block: list[Group]) -> str:
    return ", ".join(f"{KEY_TITLES.get(k, k)} {format_value(k, block[0].config.get(k))}" for k in spec.across) or "ours"


def _mean_std(group: Group, metric: str) -> tuple[float, float]:
    stat = group.stats[metric] if metric in group.stats else group.extra.get(metric)
    if stat is None or not stat.n:
        return np.nan, 0.0
    return stat.mean * 100, (stat.std or 0.0) * 100


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def heatmap(spec: AblationSpec, groups: list[Group], metric: str, path: Path, *, label: str) -> Path:
    row_key, col_key = spec.grid
    blocks = split_blocks(groups, spec.across)
    fig = Figure(figsize=(4.2 * len(blocks), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(blocks)))
    for ax, block in zip(axes, blocks):
        rows = sorted({g.config[row_key] for g in block})
        cols = sorted({g.config[col_key] for g in block})
        grid = np.full((len(rows), len(cols)), np.nan)
        for g in block:
            grid[rows.index(g.config[row_key]), cols.index(g.config[col_key])] = _mean_std(g, metric)[0]
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, origin="lower", aspect="auto")
        for (r, c), value in np.ndenumerate(grid):
            light = np.isnan(value) or value >= np.nanmean(grid)
            ax.text(c, r, "n/a" if np.isnan(value) else f"{value:.2f}", ha="center", va="center",
                    color="black" if light else "white", fontsize=8)
        ax.set_xticks(range(len(cols)), [format_value(col_key, v) for v in cols])
        ax.set_yticks(range(len(rows)), [format_value(row_key, v) for v in rows])
        ax.set_xlabel(KEY_TITLES.get(col_key, col_key))
        ax.set_ylabel(KEY_TITLES.get(row_key, row_key))
        ax.set_title(_block_name(spec, block) if spec.across else spec.title, fontsize=9)
        fig.colorbar(image, ax=ax, label=f"{label} (%)")
    return _save(fig, path)


def against_key(spec: AblationSpec, groups: list[Group], key: str, metric: str, path: Path, *,
                label: str, target: str) -> Path:
    """`metric` against a numeric row key, one line per block, with the paper's line dashed."""
    percent = key == "data.aux_ratio"
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    for block in split_blocks(groups, spec.across):
        block = sorted(block, key=lambda g: g.config[key])
        x = np.array([g.config[key] * (100 if percent else 1) for g in block], dtype=float)
        y, err = np.array([_mean_std(g, metric) for g in block]).T
        line = ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=_block_name(spec, block))
        combo = {k: block[0].config.get(k) for k in spec.across}
        paper = [spec.reference.lookup(target, combo, g.row) for g in block]
        paper_y = np.array([np.nan if not p or p.get(metric) is None else p[metric] for p in paper])
        if np.isfinite(paper_y).any():
            keep = np.isfinite(paper_y)
            ax.plot(x[keep], paper_y[keep], linestyle="--", marker="x", color=line.lines[0].get_color(),
                    label=f"paper, {_block_name(spec, block)}")
    if percent:
        ax.set_xscale("symlog", linthresh=1)
        ticks = sorted({g.config[key] * 100 for g in groups})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlabel(KEY_TITLES.get(key, key))
    ax.set_ylabel(f"{label} (%)")
    ax.set_title(spec.title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def module_bars(spec: AblationSpec, groups: list[Group], path: Path, *, suffix: str) -> Path:
    """Each metric of each module pattern as bars, one panel per block."""
    blocks = split_blocks(groups, spec.across)
    fig = Figure(figsize=(7.5, 3.0 * len(blocks)))
    axes = np.atleast_1d(fig.subplots(len(blocks), 1, squeeze=False)[:, 0])
    width = 0.8 / len(spec.metrics)
    for ax, block in zip(axes, blocks):
        x = np.arange(len(block))
        for j, metric in enumerate(spec.metrics):
            y, err = np.array([_mean_std(g, metric) for g in block]).T
            ax.bar(x + (j - (len(spec.metrics) - 1) / 2) * width, y, width, yerr=err,
                   label=METRIC_TITLES.get(metric, metric) + suffix, capsize=2)
        ax.set_xticks(x, [row_title(spec, g.row) for g in block], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("%")
        ax.set_title(_block_name(spec, block), fontsize=9)
        finite = [v for g in block for m in spec.metrics if np.isfinite(v := _mean_std(g, m)[0])]
        if finite:
            ax.set_ylim(max(0.0, min(finite) - 10), min(100.0, max(finite) + 5))
        ax.legend(fontsize=7, ncols=len(spec.metrics))
    return _save(fig, path)


def per_class_recall(spec: AblationSpec, groups: list[Group], path: Path) -> Path:
    """Per-class recall (final epoch) of each module pattern as a heat map, one panel per block."""
    blocks = split_blocks(groups, spec.across)
    fig = Figure(figsize=(7.0, 0.45 * max(len(b) for b in blocks) * len(blocks) + 1.5))
    axes = np.atleast_1d(fig.subplots(len(blocks), 1, squeeze=False)[:, 0])
    for ax, block in zip(axes, blocks):
        grid = np.array([[_mean_std(g, column)[0] for column in RECALL_COLUMNS] for g in block])
        cmap = matplotlib.colormaps["magma"].with_extremes(bad="lightgrey")
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=100, aspect="auto")
        for (r, c), value in np.ndenumerate(grid):
            ax.text(c, r, "n/a" if np.isnan(value) else f"{value:.0f}", ha="center", va="center",
                    color="black" if np.isnan(value) or value >= 60 else "white", fontsize=7)
        ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=30, ha="right", fontsize=7)
        ax.set_yticks(range(len(block)), [row_title(spec, g.row) for g in block], fontsize=7)
        ax.set_title(f"Per-class recall (%), {_block_name(spec, block)}", fontsize=9)
        fig.colorbar(image, ax=ax)
    return _save(fig, path)


def plot_ablation(spec: AblationSpec, groups: list[Group], out_dir: Path, *, target: str,
                  best: bool = False, has_recall: bool = False) -> dict[str, Path]:
    """Every figure the preset's layout has, written as PNG into `out_dir`."""
    metric = spec.metrics[0]
    suffix = " (best epoch)" if best else ""
    stem = spec.name + ("_best" if best else "")
    label = METRIC_TITLES.get(metric, metric) + suffix
    plots: dict[str, Path] = {}
    groups = [g for g in groups if g.row >= 0]
    if not groups:
        return plots
    numeric_keys = [k for k in spec.row_keys()
                    if all(_is_number(g.config.get(k)) for g in groups)]
    if spec.layout == "grid":
        plots[f"{stem}_heatmap"] = heatmap(spec, groups, metric, out_dir / f"{stem}_heatmap.png", label=label)
    elif spec.layout == "ratio":
        plots[stem] = against_key(spec, groups, "data.aux_ratio", metric, out_dir / f"{stem}.png",
                                  label=label, target=target)
    elif spec.layout == "list" and len(numeric_keys) == 1 and len(spec.row_keys()) == 1:
        plots[stem] = against_key(spec, groups, numeric_keys[0], metric, out_dir / f"{stem}.png",
                                  label=label, target=target)
    elif spec.layout == "modules":
        plots[stem] = module_bars(spec, groups, out_dir / f"{stem}.png", suffix=suffix)
        if has_recall and not best:
            plots[f"{stem}_per_class_recall"] = per_class_recall(spec, groups, out_dir / f"{stem}_per_class_recall.png")
    return plots


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
