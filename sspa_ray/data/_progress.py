"""A tiny progress bar on stderr, so building a cache needs no extra dependency."""

from __future__ import annotations

import sys
import time


class Progress:
    """Counts finished items; redraws one line at most every 0.2 s on a terminal.

    When stderr is not a terminal (Ray worker logs, CI), it prints only a start and an end line,
    so logs do not fill with carriage returns.
    """

    def __init__(self, total: int, label: str, enabled: bool = True):
        self.total = max(total, 0)
        self.label = label
        self.enabled = enabled and total > 0
        self.done = 0
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._tty = sys.stderr.isatty()
        if self.enabled and not self._tty:
            print(f"{label}: {self.total} images ...", file=sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled or not self._tty:
            return
        now = time.perf_counter()
        if now - self._last_draw >= 0.2 or self.done >= self.total:
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        width = 30
        filled = int(width * self.done / self.total)
        rate = self.done / max(now - self._start, 1e-9)
        bar = "#" * filled + "." * (width - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {rate:,.0f} img/s")
        sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self._start
        rate = self.done / max(elapsed, 1e-9)
        end = f"{self.label}: {self.done}/{self.total} images in {elapsed:.1f} s ({rate:,.0f} img/s)"
        sys.stderr.write(("\r" + end + " " * 10 + "\n") if self._tty else end + "\n")
        sys.stderr.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
