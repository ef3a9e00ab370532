"""User-facing errors.

Anything a user can fix (bad YAML, a config key, a dataset folder, a corrupt image) raises a
subclass of :class:`UserError`. The CLI prints its message on one line and exits with code 2,
before any Ray cluster starts. Everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem in the user's input; the message names the problem and the fix."""

    exit_code = 2
    label = "error"


class ConfigError(UserError):
    """An unknown config key, a value of the wrong type or out of range."""


class DataError(UserError):
    """A missing dataset folder, a malformed label file, a corrupt image."""


class SpecError(UserError):
    """A malformed search-space or ablation YAML file."""


class RunDirError(UserError):
    """An output directory that exists without --resume/--overwrite, or holds no run."""


class Interrupted(UserError):
    """An experiment stopped by a signal; resumable. Exits 128 + the signal number (130: Ctrl-C)."""

    label = "interrupted"

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class JobFailed(UserError):
    """A Ray Job of --submit that failed before its experiment started; exits 1, with its log's end."""

    exit_code = 1
