"""The paper's claims judged on an experiment: claims.md and claims.csv beside the tables.

Each claim of a preset (specs/claims.py) says that row `better` beats the rows `than` on a metric.
It is judged per metric and per `across` combination, from the completed trials of
results.parquet, row against row, paired by seed:

- with two or more common seeds, each comparison is a paired t-test (``paired_p``): it is *for*
  the claim when the difference has the claimed sign and p < 0.05, *against* it when it has the
  other sign and p < 0.05, and *unclear* otherwise;
- with one common seed there is no test.

With a test for every comparison, the claim **holds** when every comparison is for it, is
**contradicted** when any is against it, and is **inconclusive** otherwise (also when a row has
no completed trial). Where a comparison has one seed only, the verdict is a sign and says so
(``sign only (n=1): as claimed`` / ``opposite`` / ``tied``; ``outputs.Verdict``): a gap of two test
images is not a finding, and the summary counts these apart from the tested verdicts. The row
shown as the rival is the one the verdict turns on: the first comparison against the claim, or
else the rival with the highest mean.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sspa_ray.config import KEYS
from sspa_ray.outputs import Status, Verdict
from sspa_ray.report.aggregate import config_value
from sspa_ray.report.provenance import Provenance
from sspa_ray.report.significance import SIGNIFICANCE_LEVEL, paired_p
from sspa_ray.report.table_builders import paper_differences
from sspa_ray.report.table_model import BEST_EPOCH_TITLE
from sspa_ray.specs.ablation import AblationSpec
from sspa_ray.specs.claims import Claim

FOR, AGAINST, UNCLEAR = 1, -1, 0
# claims.md / claims.csv (claims_best.* at the best epoch); "claims" is also the presets' YAML key.
CLAIMS_STEM = "claims"
# The paper reports RAF-DB for every table; targets without numbers of their own are compared with it.
PAPER_TARGET, PAPER_TARGET_TITLE = "rafdb", "RAF-DB"
# Beside paper numbers that are not a like-for-like comparison (another target, or a row run otherwise).
NOT_LIKE_FOR_LIKE = "†"
CSV_COLUMNS = ("claim", "section", "metric", "combination", "better", "rival", "paper", "paper_differs", "ours_better_mean",
               "ours_better_std", "ours_better_n", "ours_rival_mean", "ours_rival_std", "ours_rival_n",
               "test", "p", "verdict", "tested")

Values = dict[int, float]  # seed -> metric value


@dataclass
class Comparison:
    rival: int
    direction: int              # FOR, AGAINST or UNCLEAR
    p: float | None
    pairs: int                  # seeds both rows completed
    difference: float | None    # mean over common seeds of better - rival


@dataclass
class ClaimResult:
    """One claim judged on one metric and `across` combination: the line of claims.md."""

    claim: Claim
    metric: str
    combo: dict[str, Any]
    better: Values
    rival: int | None
    rival_values: Values
    comparison: Comparison | None
    verdict: Verdict
    paper: str = ""
    paper_differs: str = ""     # why the paper's numbers are not like-for-like; "" when they are


def compare(better: Values, rival: Values, rival_row: int) -> Comparison:
    """One comparison of two rows' per-seed values, paired on their common seeds."""
    seeds = sorted(set(better) & set(rival))
    if not seeds:
        return Comparison(rival_row, UNCLEAR, None, 0, None)
    a = [better[s] for s in seeds]
    b = [rival[s] for s in seeds]
    difference = float(np.mean(np.subtract(a, b)))
    sign = FOR if difference > 0 else AGAINST if difference < 0 else UNCLEAR
    if len(seeds) == 1:
        return Comparison(rival_row, sign, None, 1, difference)
    p = paired_p(a, b)
    significant = p is not None and p < SIGNIFICANCE_LEVEL
    return Comparison(rival_row, sign if significant else UNCLEAR, p, len(seeds), difference)


def judge(better: Values, rivals: Mapping[int, Values]) -> tuple[Verdict, Comparison | None]:
    """The verdict of `better` against every row of `rivals`, and the comparison it turns on.

    Tested only when every comparison had two seeds or more; otherwise the signs alone, named as such.
    """
    if not better or not rivals or any(not values for values in rivals.values()):
        missing = next((row for row, values in rivals.items() if not values), None)
        return Verdict.INCONCLUSIVE, None if missing is None else Comparison(missing, UNCLEAR, None, 0, None)
    comparisons = [compare(better, values, row) for row, values in rivals.items()]
    if any(c.pairs == 0 for c in comparisons):  # the rows ran no seed in common: nothing to pair
        return Verdict.INCONCLUSIVE, next(c for c in comparisons if c.pairs == 0)
    tested = all(c.pairs >= 2 for c in comparisons)
    strongest = max(comparisons, key=lambda c: -c.difference)
    against = [c for c in comparisons if c.direction == AGAINST]
    if against:
        return Verdict.CONTRADICTED if tested else Verdict.SIGN_OPPOSITE, min(against, key=lambda c: c.difference)
    if all(c.direction == FOR for c in comparisons):
        return Verdict.HOLDS if tested else Verdict.SIGN_AS_CLAIMED, strongest
    return Verdict.INCONCLUSIVE if tested else Verdict.SIGN_TIED, strongest


def _completed(results: pd.DataFrame) -> pd.DataFrame:
    return results[results["status"] == Status.COMPLETED] if "status" in results else results.iloc[0:0]


def _combo(spec: AblationSpec, target: str, record: Mapping[str, Any]) -> tuple:
    return tuple((key, config_value(key, record.get(key))) for key in spec.active_across(target))


def seed_values(results: pd.DataFrame, spec: AblationSpec, target: str, metric: str,
                prefix: str = "") -> dict[tuple, dict[int, Values]]:
    """combination -> row -> seed -> value, from the completed trials."""
    out: dict[tuple, dict[int, Values]] = {}
    for record in _completed(results).to_dict("records"):
        value = record.get(prefix + metric)
        if value is None or not math.isfinite(float(value)):
            continue
        combo = _combo(spec, target, record)
        seed = int(record.get("train.seed") or 0)
        out.setdefault(combo, {}).setdefault(int(record["row"]), {})[seed] = float(value)
    return out


def row_configs(results: pd.DataFrame, spec: AblationSpec, target: str) -> dict[tuple, dict[str, Any]]:
    """(combination, row) -> the config a completed trial of that row ran (seeds aside, they agree)."""
    out: dict[tuple, dict[str, Any]] = {}
    for record in _completed(results).to_dict("records"):
        key = (_combo(spec, target, record), int(record["row"]))
        out.setdefault(key, {k: config_value(k, record[k]) for k in KEYS if k in record})
    return out


def check_claims(spec: AblationSpec, results: pd.DataFrame, target: str, prefix: str = "") -> list[ClaimResult]:
    """Every claim of `spec`, per metric and per combination of `across` that has results."""
    verdicts = []
    configs = row_configs(results, spec, target)
    for claim in spec.claims:
        for metric in claim.metrics:
            per_combo = seed_values(results, spec, target, metric, prefix)
            for combo in per_combo or {(): {}}:
                rows = per_combo.get(combo, {})
                rivals = {row: rows.get(row, {}) for row in claim.than}
                verdict, comparison = judge(rows.get(claim.better, {}), rivals)
                rival = comparison.rival if comparison else None
                verdicts.append(ClaimResult(
                    claim=claim, metric=metric, combo=dict(combo), better=rows.get(claim.better, {}),
                    rival=rival, rival_values=rows.get(rival, {}) if rival is not None else {},
                    comparison=comparison, verdict=verdict,
                    paper=_paper(spec, target, claim, metric, dict(combo)),
                    paper_differs=_paper_differs(spec, target, claim, combo, configs),
                ))
    return verdicts


def _paper(spec: AblationSpec, target: str, claim: Claim, metric: str, combo: dict[str, Any]) -> str:
    """The paper's numbers for the claim: better vs the best of its rivals, per paper combination."""
    reference = spec.reference
    paper_target = target if target in reference.values else PAPER_TARGET
    combos = reference.values.get(paper_target, {})
    if combo and tuple(sorted(combo.items())) in combos:
        combos = {tuple(sorted(combo.items())): combos[tuple(sorted(combo.items()))]}
    parts = []
    for key in combos:
        def number(row, key=key):
            entry = reference.lookup(paper_target, dict(key), row)
            return None if entry is None else entry.get(metric)
        mine = number(claim.better)
        rivals = [v for v in (number(r) for r in claim.than) if v is not None]
        if mine is None or not rivals:
            continue
        name = ", ".join(str(v) for _, v in key)
        text = f"{mine:.2f} vs {max(rivals):.2f}"
        parts.append(f"{name}: {text}" if name else text)
    return "; ".join(parts) or "–"


def _paper_differs(spec: AblationSpec, target: str, claim: Claim, combo: tuple,
                   configs: Mapping[tuple, dict[str, Any]]) -> str:
    """Why the paper's numbers of `claim` are not a like-for-like comparison with this run, or "".

    The rule of the tables' reference columns (table_builders.paper_differences): another target than the
    paper's, or a row that ran another configuration than the paper's (--set train.epochs=2, ...).
    The tables drop such numbers; the claims keep them, marked, since the claim is what they say."""
    if target not in spec.reference.values:
        return f"the paper's numbers are {PAPER_TARGET_TITLE}'s, at the paper's settings; this run's target is {target}"
    differences = [paper_differences(spec, target, row, configs[(combo, row)], dict(combo))
                   for row in (claim.better, *claim.than) if (combo, row) in configs]
    shown = ", ".join(dict.fromkeys(d for text in differences if text for d in text.split(", ")))
    return f"these rows ran another configuration than the paper's: {shown}" if shown else ""


def _mean_std_n(values: Values) -> tuple[float | None, float | None, int]:
    numbers = list(values.values())
    mean = float(np.mean(numbers)) if numbers else None
    std = float(np.std(numbers, ddof=1)) if len(numbers) >= 2 else None
    return mean, std, len(numbers)


def _cell(values: Values) -> str:
    mean, std, n = _mean_std_n(values)
    if mean is None:
        return "no value"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "") + f" (n={n})"


def _test(v: ClaimResult) -> str:
    c = v.comparison
    if c is None or c.pairs == 0:
        return "none: the rows share no seed" if v.better and v.rival_values else "none: a row has no completed trial"
    if not v.verdict.is_tested:
        return "none: one seed, the sign alone"
    extent = f", against each of {len(v.claim.than)} rows" if len(v.claim.than) > 1 else ""
    return f"paired t-test by seed, {c.pairs} pairs{extent}"


def _p(v: ClaimResult) -> str:
    c = v.comparison
    if c is None or c.p is None:
        return "–"
    return f"{c.p:.3g}"


def _combo_text(combo: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in combo.items())


@dataclass
class ClaimsView:
    """The claims table as claims.md and report.html show it: cells, which verdicts were tested, notes."""

    head: list[str]
    rows: list[list[str]]
    tested: list[bool]
    summary: str
    notes: list[str]


def claims_view(verdicts: list[ClaimResult], row_name) -> ClaimsView:
    head, rows = _claim_rows(verdicts, row_name)
    return ClaimsView(head, rows, [v.verdict.is_tested for v in verdicts], verdict_summary(verdicts),
                      claim_notes(verdicts))


def _claim_rows(verdicts: list[ClaimResult], row_name) -> tuple[list[str], list[list[str]]]:
    with_combo = any(v.combo for v in verdicts)
    head = ["claim", "metric"] + (["combination"] if with_combo else []) + ["paper", "ours", "test", "p", "verdict"]
    rows = []
    for v in verdicts:
        rival = row_name(v.rival) if v.rival is not None else "–"
        ours = f"{_cell(v.better)} vs {rival}: {_cell(v.rival_values)}"
        words = v.claim.text + (f" (§{v.claim.section})" if v.claim.section else "")
        paper = v.paper + (f" {NOT_LIKE_FOR_LIKE}" if v.paper_differs and v.paper != "–" else "")
        rows.append([words, v.metric] + ([_combo_text(v.combo)] if with_combo else []) +
                    [paper, ours, _test(v), _p(v), v.verdict.value])
    return head, rows


def verdict_summary(verdicts: list[ClaimResult]) -> str:
    """The counts, tested verdicts apart from one-seed signs: what a reader may take as findings."""
    parts = []
    for tested, what in ((True, f"Tested (paired t-test by seed, p < {SIGNIFICANCE_LEVEL:g})"),
                         (False, "Untested (one seed: the sign alone, not a finding)")):
        kinds = [k for k in Verdict if k.is_tested == tested]
        counts = [sum(v.verdict is k for v in verdicts) for k in kinds]
        if sum(counts) or tested:
            parts.append(f"{what}: " + ", ".join(f"{n} {k.summary_word}" for k, n in zip(kinds, counts, strict=True)) + ".")
    return " ".join(parts)


def claim_notes(verdicts: list[ClaimResult]) -> list[str]:
    differs = list(dict.fromkeys(v.paper_differs for v in verdicts if v.paper_differs and v.paper != "–"))
    unlike = [f"{NOT_LIKE_FOR_LIKE} Not a like-for-like comparison: {'; '.join(differs)}. The paper's numbers show "
              "what the paper claims, not what this run should reach."] if differs else []
    return [
        "Values in percent, mean ± std over seeds (ddof=1); `ours` shows the claimed-better row, then the "
        "rival the verdict turns on.",
        f"Holds / contradicted: the difference has the claimed / the other sign, with p < {SIGNIFICANCE_LEVEL} "
        "in a paired t-test by seed against every rival; otherwise inconclusive.",
        "Sign only (n=1): one seed, so no test: the verdict names the sign of the difference, which a "
        "gap of a few test images can flip. Run `--seeds 3` or more for a verdict.",
        "Paper: the claimed-better row vs its best rival in the paper's table.",
        *unlike,
    ]


def render_markdown(spec: AblationSpec, verdicts: list[ClaimResult], row_name, provenance: Provenance,
                    best: bool = False) -> str:
    heading = f"# {spec.title}: the paper's claims" + (BEST_EPOCH_TITLE if best else "")
    lines = [heading, "", provenance.markdown(), ""]
    if not verdicts:
        return "\n".join(lines + ["This preset lists no claims.", ""])
    view = claims_view(verdicts, row_name)
    head = view.head
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join([":--"] * (len(head) - 4) + [":--", ":--", "--:", ":-:"]) + "|"]
    for tested, cells in zip(view.tested, view.rows, strict=True):
        verdict = f"**{cells[-1]}**" if tested else cells[-1]
        lines.append("| " + " | ".join([*cells[:-1], verdict]) + " |")
    lines += ["", view.summary] + [f"- {note}" for note in view.notes] + [""]
    return "\n".join(lines)


def render_csv(verdicts: list[ClaimResult], row_name) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for v in verdicts:
        b_mean, b_std, b_n = _mean_std_n(v.better)
        r_mean, r_std, r_n = _mean_std_n(v.rival_values)
        p = v.comparison.p if v.comparison else None
        writer.writerow([v.claim.text, v.claim.section, v.metric, _combo_text(v.combo), row_name(v.claim.better),
                         row_name(v.rival) if v.rival is not None else "", v.paper, v.paper_differs,
                         _num(b_mean), _num(b_std), b_n, _num(r_mean), _num(r_std), r_n, _test(v), _num(p), v.verdict.value,
                         v.verdict.is_tested])
    return buffer.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def write_claims(spec: AblationSpec, verdicts: list[ClaimResult], exp_dir: Path, *,
                 provenance: Provenance, best: bool = False) -> dict[str, Path]:
    """Write claims.md and claims.csv (claims_best.* for best-epoch metrics: check_claims with
    prefix "best.") into `exp_dir`; the CSV's provenance is the provenance.json beside it."""
    stem = CLAIMS_STEM + ("_best" if best else "")
    paths = {"claims.md": Path(exp_dir) / f"{stem}.md", "claims.csv": Path(exp_dir) / f"{stem}.csv"}
    paths["claims.md"].write_text(render_markdown(spec, verdicts, spec.row_name, provenance, best), encoding="utf-8")
    paths["claims.csv"].write_text(render_csv(verdicts, spec.row_name), encoding="utf-8")
    return paths
