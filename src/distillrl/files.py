"""Reading the text files a user gives, and writing the files a run keeps so that a kill never leaves half of one.

`write_text_atomic` writes a temporary file beside the target (`.tmp-NAME-PID`) and renames it into place: a
reader, or a run resumed after `kill -9`, sees the old file or the new one, never a truncated mix. A temporary
file left by a killed run is removed by the next run of the same directory (it holds the directory's lock).
"""

from __future__ import annotations

import os
from pathlib import Path

from distillrl.errors import UserError

TEMPORARY_PREFIX = ".tmp-"


def read_utf8_text(path: str | Path, what: str) -> str:
    """The text of `path` (a `what`, e.g. "config"); a UserError naming the file when it cannot be read."""
    try:
        return Path(path).read_bytes().decode("utf-8")
    except OSError as error:
        raise UserError(f"{path}: cannot read {what} ({error.strerror})") from None
    except UnicodeDecodeError as error:
        byte = error.object[error.start]
        raise UserError(f"{path}: not UTF-8 text (byte {byte:#04x} at offset {error.start})") from None


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace `path` by `text` in one step: write a temporary file in the same directory, flush it, rename it."""
    path = Path(path)
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{path.name}-{os.getpid()}")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
