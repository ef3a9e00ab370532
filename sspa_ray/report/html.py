"""report.html: one self-contained page per experiment, to open from disk with no server.

It holds the provenance line, then per table (one for a preset or a search, one per paper table
for ``--preset paper``) the table with its notes, the claims and their verdicts, the plots and
the selection gallery, and the per-class tables; at the end, every trial with a link to its
folder. Images are inlined as base64 data URIs and the style sheet is inline, so the page is one
file that can be mailed or archived; the trial links are relative to the page where the trial
folders sit under it (the default ``--storage``), absolute ``file:`` links elsewhere on this
machine, and plain text on remote storage.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sspa_ray.report.claims import ClaimsView
from sspa_ray.report.provenance import Provenance
from sspa_ray.report.table_model import Table
from sspa_ray.report.table_render import to_html

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
.provenance { background: #f4f4f4; border-left: 4px solid #888; padding: .5em .8em; font-size: 13px; }
table { border-collapse: collapse; margin: 1em 0 .3em; font-size: 13px; }
caption { text-align: left; font-weight: 600; padding-bottom: .3em; }
th, td { border-bottom: 1px solid #ddd; padding: .25em .6em; vertical-align: top; }
th { border-bottom: 2px solid #666; }
tr.block td { border-top: 2px solid #999; }
.l { text-align: left; } .c { text-align: center; } .r { text-align: right; font-variant-numeric: tabular-nums; }
.notes { font-size: 12px; color: #555; margin-top: .2em; }
.untested { color: #777; font-style: italic; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #555; }
nav a { margin-right: 1em; }
"""


@dataclass
class Part:
    """One table's share of the page: the table, its claims, its figures, its per-class tables."""

    anchor: str
    table: Table
    claims: ClaimsView | None = None
    figures: dict[str, Path] = field(default_factory=dict)
    per_class: list[Table] = field(default_factory=list)


def _image(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}">'
            f"<figcaption>{html.escape(path.name)}</figcaption></figure>")


def _claims(view: ClaimsView) -> str:
    out = ["<table><caption>The paper's claims</caption><thead><tr>"]
    out += [f"<th>{html.escape(h)}</th>" for h in view.head]
    out.append("</tr></thead><tbody>")
    for tested, cells in zip(view.tested, view.rows, strict=True):
        verdict = (f"<strong>{html.escape(cells[-1])}</strong>" if tested
                   else f'<span class="untested">{html.escape(cells[-1])}</span>')
        out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells[:-1]) + f"<td>{verdict}</td></tr>")
    out.append("</tbody></table>")
    out.append(f"<p>{html.escape(view.summary)}</p>")
    out.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in view.notes) + "</ul>")
    return "\n".join(out)


def _part(part: Part) -> str:
    out = [f'<section id="{html.escape(part.anchor)}">', f"<h2>{html.escape(part.table.title)}</h2>", to_html(part.table)]
    if part.claims is not None and part.claims.rows:
        out += ["<h3>Claims</h3>", _claims(part.claims)]
    if part.figures:
        out += ["<h3>Plots</h3>"] + [_image(path) for path in part.figures.values()]
    if part.per_class:
        out += ["<h3>Per class</h3>"] + [to_html(t) for t in part.per_class]
    out.append("</section>")
    return "\n".join(out)


def _trial_href(exp_dir: Path, experiment_path: str, trial_dir: str) -> str | None:
    if not experiment_path or "://" in experiment_path or not trial_dir:
        return None
    folder = (Path(experiment_path) / trial_dir).resolve()
    try:
        return Path(os.path.relpath(folder, exp_dir.resolve())).as_posix() + "/"
    except ValueError:  # another drive
        return folder.as_uri() + "/"


def _trials(results: pd.DataFrame, experiment: Mapping[str, Any], exp_dir: Path,
            describe: Callable[[Mapping[str, Any]], str]) -> str:
    """Every trial: its folder (a link when local), what it ran, seed, status and final metrics."""
    storage = str(experiment.get("experiment_path") or "")
    out = ["<table><caption>Trials</caption><thead><tr>"]
    out += [f"<th>{h}</th>" for h in ("trial folder", "configuration", "seed", "status", "accuracy", "macro-F1")]
    out.append("</tr></thead><tbody>")
    for record in results.to_dict("records"):
        folder = str(record.get("trial_dir") or record.get("trial_id") or "")
        href = _trial_href(exp_dir, storage, str(record.get("trial_dir") or ""))
        link = f'<a href="{html.escape(href)}">{html.escape(folder)}</a>' if href else html.escape(folder)
        metrics = [record.get(m) for m in ("accuracy", "macro_f1")]
        cells = [html.escape(describe(record)), html.escape(str(record.get("train.seed", ""))),
                 html.escape(str(record.get("status", "")))]
        cells += [f"{100 * v:.2f}" if isinstance(v, float) and v == v else "–" for v in metrics]
        out.append(f"<tr><td>{link}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    where = f"Trial folders: {html.escape(storage)}" if storage else "The experiment's storage was not recorded."
    return "\n".join(out) + f'\n<p class="notes">{where}</p>'


def write_report(path: Path, *, title: str, provenance: Provenance, parts: list[Part], results: pd.DataFrame,
                 experiment: Mapping[str, Any], describe: Callable[[Mapping[str, Any]], str],
                 figures: Mapping[str, Path] = {}) -> Path:
    """Write the page to `path`; `figures` are those that span tables (--preset paper's aux_share)."""
    path = Path(path)
    nav = "".join(f'<a href="#{html.escape(p.anchor)}">{html.escape(p.anchor)}</a>' for p in parts) if len(parts) > 1 else ""
    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="provenance">{html.escape(provenance.markdown())}</p>']
    if nav:
        body.append(f"<nav>{nav}<a href=\"#trials\">trials</a></nav>")
    body += [_part(p) for p in parts]
    if figures:
        body += ['<section id="across-tables"><h2>Across tables</h2>'] + [_image(f) for f in figures.values()] + ["</section>"]
    body += ['<section id="trials"><h2>Trials</h2>', _trials(results, experiment, path.parent, describe), "</section>"]
    page = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
    path.write_text(page, encoding="utf-8")
    return path
