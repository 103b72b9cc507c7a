"""Reading the text files a user gives, and writing the files a run keeps so that a kill never leaves half of one.

`write_text_atomic` writes a temporary file beside the target (`.tmp-NAME-PID`) and renames it into place: a
reader, or a run resumed after `kill -9`, sees the old file or the new one, never a truncated mix. A temporary
file left by a killed run is removed by the next run of the same directory (it holds the directory's lock).

Everything written gets the permissions the user's umask gives (`temporary_directory` undoes mkdtemp's 0700, and
`apply_umask` the 0600 of files that libraries write through mkstemp, safetensors among them), so a teammate or a
serving account can read the models a run writes.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from distillrl.core.errors import UserError, one_line

TEMPORARY_PREFIX = ".tmp-"
MAX_TEXT_BYTES = {"config": 16 << 20}  # a file of this kind larger than this is refused (e.g. a path to /dev/zero)
DEFAULT_MAX_TEXT_BYTES = 1 << 30


def read_utf8_text(path: str | Path, what: str) -> str:
    """The text of `path` (a `what`, e.g. "config"); a UserError naming the file when it cannot be read, or holds
    more than MAX_TEXT_BYTES[what] bytes (read no further than that, so an endless device or pipe is refused)."""
    limit = MAX_TEXT_BYTES.get(what, DEFAULT_MAX_TEXT_BYTES)
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as error:
        raise UserError(f"{path}: cannot read {what} ({error.strerror})") from None
    if len(data) > limit:
        raise UserError(f"{path}: more than {limit >> 20} MiB, too large for a {what} file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        byte = error.object[error.start]
        raise UserError(f"{path}: not UTF-8 text (byte {byte:#04x} at offset {error.start})") from None


def current_umask() -> int:
    """The process's umask (read and restored at once: os.umask is the only way to read it portably)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_directory(prefix: str, parent: str | Path) -> Path:
    """A new, empty directory `parent/PREFIX*` with the mode a plain mkdir would give (0777 & ~umask), not 0700."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o777 & ~current_umask())
    return path


def free_space(path: Path) -> str:
    """The free space of the filesystem that holds `path` (or its nearest existing parent), in words."""
    existing = next((p for p in [path, *path.parents] if p.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    return f"{free / (1 << 20):.1f} MiB free there" if free < 1 << 30 else f"{free / (1 << 30):.1f} GiB free there"


def write_failure(path: Path, error: Exception, kept: str = "") -> UserError:
    """A failed write of `path` in one line: the reason (strerror for an OSError), the free space, what was kept."""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else one_line(error)
    return UserError(f"cannot write {path} ({reason}; {free_space(path)})" + (f"; {kept}" if kept else ""))


def apply_umask(written: Path) -> None:
    """Give a written file, or a folder and everything under it, the mode that creating it with the umask gives:
    0777 & ~umask for directories, 0666 & ~umask for files (a file's execute bits are kept where the umask allows)."""
    mask = current_umask()
    for path in [written, *written.rglob("*")] if written.is_dir() else [written]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o777 & ~mask)
        else:
            executable = path.stat().st_mode & 0o111
            path.chmod((0o666 | executable) & ~mask)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace `path` by `text` in one step: write a temporary file in the same directory, flush it, rename it."""
    path = Path(path)
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{path.name}-{os.getpid()}")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)



def unused_path(path: str | Path) -> Path:
    """`path`, or when something is there already the first of NAME-2.SUFFIX, NAME-3.SUFFIX, ... that is free."""
    path = Path(path)
    others = (path.with_name(f"{path.stem}-{number}{path.suffix}") for number in itertools.count(2))
    return path if not path.exists() else next(other for other in others if not other.exists())


def read_json_lines(path: str | Path, noun: str, valid: Callable[[dict], bool], what: str) -> list[dict]:
    """The JSON objects of a .jsonl file written line by line, without a last line that a kill cut short (no newline
    after it); a broken or invalid line before it is a UserError naming the file and line (`noun`: what a line is,
    e.g. "record"; `what`: what a valid line holds, e.g. "metrics record (no integer `step`)")."""
    path = Path(path)
    text = path.read_text()
    lines = text.split("\n")
    if not text.endswith("\n"):
        lines = lines[:-1]  # an unfinished last line: written by a run killed while writing it
    rows = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(f"{path}:{number}: not a JSON {noun} ({error.msg}); the file was edited or damaged") from None
            if not isinstance(row, dict) or not valid(row):
                raise UserError(f"{path}:{number}: not a {what}")
            rows.append(row)
    return rows

