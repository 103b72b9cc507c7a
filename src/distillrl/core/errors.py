"""User errors: a problem with what the user gave (a config, a file, an option), not with distillrl.

The command line shows each one as a single `distillrl: error: ...` line naming the file, line or field, and exits
with code 2 (`--debug` shows the traceback instead). Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem the user can fix, already worded as `where: what is wrong (and what to do)`."""


class ConfigError(UserError):
    """A configuration error, already formatted as `file:line: field: problem`."""


def one_line(error: Exception) -> str:
    """An exception's message on one line (library messages often span several)."""
    return " ".join(str(error).split()) or type(error).__name__
