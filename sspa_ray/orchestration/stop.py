"""Ending an experiment early without losing it: Ctrl-C, SIGTERM, a closed terminal, a full disk.

While ``tuner.fit()`` runs, :class:`StopGuard` catches SIGINT, SIGTERM and SIGHUP and a storage
error reported by a trial or by Ray's state sync. Each one ends the run the way Tune ends it on
SIGUSR1: the loop stops, the experiment state is written one last time, and the unfinished trials
stay pending in it, so ``--resume`` continues them from their checkpoints. (Tune's own stop-all path
would mark every unfinished trial as finished.) Tune's restore hints and its error blocks about
that stop are kept off the terminal; the command prints one line of its own instead.
A second SIGINT or SIGTERM ends the command at once.

A closed terminal: the shell sends SIGHUP to its jobs, and the kernel may send it again, so a
repeated SIGHUP never escalates. The terminal is gone, and writing to it would fail (EIO), so what
the command prints from then on goes to ``hangup.log`` in ``--out``. Under ``nohup`` SIGHUP is
ignored and stays ignored: the run goes on.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from sspa_ray.orchestration.storage import StorageFull, storage_error

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Tune's SIGINT handler would replace ours; its SIGUSR1 handler is the graceful stop we call.
_TUNE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"
_active: list[StopGuard] = []


def stopping() -> bool:
    """True while a running experiment is being stopped early (read by driver-side callbacks)."""
    return bool(_active) and _active[-1].stopping


class ExperimentStopped(Exception):
    """The experiment ended early and can be resumed: by a signal or by a full storage."""

    def __init__(self, signum: int | None = None, storage: StorageFull | OSError | None = None):
        super().__init__(signum, storage)
        self.signum, self.storage = signum, storage
        # Set by the tuner: results.parquet's rows as the saved state has them, and what the
        # experiment needs in storage.
        self.frame = None
        self.trials = 0
        self.checkpoints_kept = 0
        self.checkpoint_bytes = 0

    @property
    def exit_code(self) -> int:
        return 2 if self.signum is None else 128 + self.signum  # 130 for SIGINT, as a shell reports it


class StopGuard:
    """Context manager around ``tuner.fit()``; :meth:`check` raises ExperimentStopped afterwards."""

    def __init__(self, log_filter_target: str = "ray", hangup_log: Path | None = None):
        self.signum: int | None = None
        self.hangup_log = hangup_log
        self._terminal_fds: list[int] = []
        self.storage: StorageFull | OSError | None = None
        self._previous: dict[int, Callable] = {}
        self._logger = logging.getLogger(log_filter_target)

    @property
    def stopping(self) -> bool:
        return self.signum is not None or self.storage is not None

    def __enter__(self) -> StopGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                if sig == signal.SIGHUP and signal.getsignal(sig) is signal.SIG_IGN:
                    continue  # nohup: the user chose to go on when the terminal closes
                self._previous[sig] = signal.signal(sig, self._on_signal)
        # Known now: once the terminal hangs up, isatty() fails on it.
        self._terminal_fds = [fd for fd in (1, 2) if os.isatty(fd)]
        for handler in self._logger.handlers:
            handler.addFilter(self._filter)
        _active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _active.remove(self)
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        for handler in self._logger.handlers:
            handler.removeFilter(self._filter)

    def check(self) -> None:
        if self.stopping:
            raise ExperimentStopped(self.signum, self.storage)

    # ---- triggers ------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame) -> None:
        if signum == signal.SIGHUP:
            self._leave_terminal()
            if self.signum is not None:
                return  # the terminal's hangup comes more than once; it never means "stop now"
        if self.signum is not None:
            raise KeyboardInterrupt  # a second signal: stop now; the last saved state stays
        self.signum = signum
        self._stop_tune()

    def _leave_terminal(self) -> None:
        """Point stdout and stderr, where they were the terminal, at ``hangup_log`` (or nowhere)."""
        if not self._terminal_fds:
            return
        target = os.devnull
        if self.hangup_log is not None and self.hangup_log.parent.is_dir():
            target = str(self.hangup_log)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError:
            fd = os.open(os.devnull, os.O_WRONLY)
        for terminal in self._terminal_fds:
            os.dup2(fd, terminal)
        os.close(fd)
        self._terminal_fds = []

    def _on_storage_error(self, error: StorageFull | OSError) -> None:
        if self.storage is None:
            self.storage = error
            self._stop_tune()

    def _stop_tune(self) -> None:
        handler = signal.getsignal(signal.SIGUSR1)
        if callable(handler):  # Tune's graceful stop, installed by tuner.fit()
            try:
                handler(signal.SIGUSR1, None)
            except ValueError:
                pass  # called from Ray's sync thread: the stop is set, only its SIGINT reset failed

    def _filter(self, record: logging.LogRecord) -> bool:
        """Drop Ray's log records about the stop; a storage error among them starts one."""
        error = storage_error(record.exc_info[1] if record.exc_info else None)
        if error is not None:
            self._on_storage_error(error)
            return False
        return not (self.stopping and record.name.startswith("ray.tune"))

