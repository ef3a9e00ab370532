"""The "did you mean" hint of every unknown key, choice or name (config, specs, presets)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# Unknown keys are usually typos of a known one; a looser cutoff fits short choice values.
KEY_CUTOFF = 0.6
CHOICE_CUTOFF = 0.5


def did_you_mean(word: object, known: Iterable[str], *, cutoff: float = KEY_CUTOFF, otherwise: str = "") -> str:
    """``"did you mean X?"`` for the known word nearest to `word`, else `otherwise`."""
    near = difflib.get_close_matches(str(word), list(known), n=1, cutoff=cutoff)
    return f"did you mean {near[0]}?" if near else otherwise
