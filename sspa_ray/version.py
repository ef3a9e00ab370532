"""Which code produced an output: the package version and, in a git checkout, the commit.

An experiment records it in experiment.json each time it runs (``runs``); the report's provenance
line names it. The commit is read only from the checkout that holds this very package (an
editable install), never from whatever repository an installed copy happens to sit in, and it
is marked ``+changes`` when tracked files differ from it, since the commit alone would then
name code that did not run.
"""

from __future__ import annotations

import datetime as _dt
import functools
import subprocess
from pathlib import Path

from sspa_ray import __version__

PACKAGE_DIR = Path(__file__).resolve().parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(PACKAGE_DIR.parent), *args], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The short commit of the checkout this package is imported from, or None (a wheel, no git)."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != PACKAGE_DIR.parent:
        return None
    commit = _git("rev-parse", "--short=8", "HEAD")
    if commit is None:
        return None
    changed = _git("status", "--porcelain", "--untracked-files=no")
    return commit + ("+changes" if changed else "")


def code_version() -> str:
    """"sspa-ray 0.1.0, git 1a2b3c4d" (the commit only in a git checkout)."""
    commit = git_commit()
    return f"sspa-ray {__version__}" + (f", git {commit}" if commit else "")


def this_run() -> dict[str, str]:
    """What experiment.json's ``runs`` records of a start or a resume: the UTC time and the code."""
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    return {"date": now.isoformat().replace("+00:00", "Z"), "code": code_version()}
