"""The paper's claims in a preset: comparisons of rows on a metric, validated with their YAML line.

A preset lists what its paper table claims, for ``sspa-ray report`` to check on every run::

    claims:
      - claim: SSM + fixed D_T beats SSM alone     # the claim in words
        section: "4.4"                             # where the paper makes it (optional)
        metrics: [accuracy]                        # one verdict per metric
        better: 2                                  # a row: its index, or its label
        than: 1                                    # a row, a list of rows, or `all` (every other row)

``than: all`` states that ``better`` is the best row. Every problem is a one-line SpecError that
names the file and line, as in the rest of specs/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sspa_ray.errors import SpecError
from sspa_ray.specs._yaml import SpecFile

CLAIM_KEYS = ("claim", "section", "metrics", "better", "than")
EVERY_OTHER_ROW = "all"


@dataclass(frozen=True)
class Claim:
    text: str
    section: str
    metrics: tuple[str, ...]
    better: int                 # row index
    than: tuple[int, ...]       # row indices
    best_of: bool               # `than: all`: better is claimed to be the best row


def parse_claims(src: SpecFile, raw: Any, *, rows: int, labels: list[str | None], metrics: tuple[str, ...]) -> list[Claim]:
    """Validate the `claims:` list of a preset with `rows` rows named `labels`, measured on `metrics`."""
    if raw is None:
        return []

    def error(where: str, message: str) -> SpecError:
        return src.error(where, f"{where}: {message}")

    if not isinstance(raw, list):
        raise error("claims", "must be a list of claims, each {claim, metrics, better, than}")

    def row(where: str, value: Any) -> int:
        if isinstance(value, str) and value in labels:
            return labels.index(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < rows:
            named = [label for label in labels if label]
            hint = f" or one of the labels {', '.join(repr(n) for n in named)}" if named else ""
            raise error(where, f"{value!r} is not a row: give a row index 0..{rows - 1}{hint}")
        return value

    claims = []
    for i, item in enumerate(raw):
        here = f"claims[{i}]"
        if not isinstance(item, dict):
            raise error(here, "must be a mapping with claim, metrics, better and than")
        for key in item:
            if key not in CLAIM_KEYS:
                raise error(f"{here}.{key}", f"unknown key; allowed: {', '.join(CLAIM_KEYS)}")
        for key in ("claim", "metrics", "better", "than"):
            if key not in item:
                raise error(here, f"missing required key '{key}'")
        text = item["claim"]
        if not isinstance(text, str) or not text.strip():
            raise error(f"{here}.claim", "must say the claim in words")
        section = item.get("section", "")
        if not isinstance(section, (str, int, float)):
            raise error(f"{here}.section", "must be a section number such as \"4.4\"")
        names = item["metrics"]
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names or len(set(map(str, names))) != len(names):
            raise error(f"{here}.metrics", f"must list distinct metrics of the preset ({', '.join(metrics)})")
        for name in names:
            if name not in metrics:
                raise error(f"{here}.metrics", f"{name!r} is not one of the preset's metrics: {', '.join(metrics)}")
        better = row(f"{here}.better", item["better"])
        than_raw = item["than"]
        best_of = than_raw == EVERY_OTHER_ROW
        if best_of:
            than = tuple(r for r in range(rows) if r != better)
        else:
            values = than_raw if isinstance(than_raw, list) else [than_raw]
            if not values:
                raise error(f"{here}.than", f"must name a row, a list of rows or '{EVERY_OTHER_ROW}'")
            than = tuple(row(f"{here}.than", v) for v in values)
        if better in than or len(set(than)) != len(than):
            raise error(f"{here}.than", "must name other rows than `better`, each once")
        claims.append(Claim(text=text.strip(), section=str(section), metrics=tuple(names), better=better,
                            than=than, best_of=best_of))
    return claims
