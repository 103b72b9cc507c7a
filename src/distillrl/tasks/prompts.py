"""Prompt datasets from jsonl or parquet files, verified row by row.

Each row has a string `prompt` and optionally `answer` (checked by the exact-match verifier), `completion`
(a reference solution, for SFT) and `domain`. A bad row fails at load time naming its file and line (jsonl)
or row (parquet).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from distillrl.errors import UserError
from distillrl.files import read_utf8_text
from distillrl.tasks.base import Problem
from distillrl.tasks.rewards import AnswerVerifier

OPTIONAL_FIELDS = ("answer", "completion", "domain")


class DatasetError(UserError):
    """A prompt file or row that cannot be used, formatted as `file:line: problem`."""


def _problem_from_row(row: object, where: str) -> Problem:
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected an object with a `prompt` field, got {type(row).__name__}")
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise DatasetError(f"{where}: field `prompt` must be a non-empty string, got {prompt!r}")
    values = {}
    for field in OPTIONAL_FIELDS:
        value = row.get(field)
        if value is not None and not isinstance(value, (str, int, float)):
            raise DatasetError(f"{where}: field `{field}` must be a string or number, got {type(value).__name__}")
        values[field] = None if value is None else str(value)
    return Problem(prompt=prompt, answer=values["answer"], solution=values["completion"], domain=values["domain"],
                   row=row)


def _jsonl_rows(path: Path) -> list[tuple[object, str]]:
    """Each non-blank line's JSON value and where it is (`file:line`)."""
    try:
        text = read_utf8_text(path, "prompts")
    except UserError as error:
        raise DatasetError(str(error)) from None
    rows = []
    for line_number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                rows.append((json.loads(line), f"{path}:{line_number}"))
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path}:{line_number}: invalid JSON ({error.msg} at column {error.colno})") from None
    return rows


def _parquet_rows(path: Path) -> list[tuple[object, str]]:
    """Each row of a parquet file as a dict and where it is (`file: row i`)."""
    import pyarrow
    import pyarrow.parquet

    try:
        table = pyarrow.parquet.read_table(path)
    except (pyarrow.ArrowException, OSError) as error:
        raise DatasetError(f"{path}: not a readable parquet file ({error})") from None
    if table.num_rows and "prompt" not in table.column_names:
        raise DatasetError(f"{path}: row 0: missing field `prompt` (columns: {', '.join(table.column_names)})")
    return [(row, f"{path}: row {i}") for i, row in enumerate(table.to_pylist())]


def load_problems(path: str | Path) -> tuple[list[Problem], list[str]]:
    """Load and verify every row of a `.jsonl`/`.json` or `.parquet` prompt file: the problems and where each
    one is (`file:line` or `file: row i`)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows = _jsonl_rows(path)
    elif suffix == ".parquet":
        rows = _parquet_rows(path)
    else:
        raise DatasetError(f"{path}: unsupported format {suffix!r} (use .jsonl or .parquet)")
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return [_problem_from_row(row, where) for row, where in rows], [where for _, where in rows]


class PromptsTask:
    """A task over prompt files: training draws uniformly from `train_path`, evaluation reads `test_path`."""

    name = "prompts"

    def __init__(self, train_path: str, test_path: str | None = None):
        self.train, self.train_where = load_problems(train_path)
        self.test, self.test_where = load_problems(test_path) if test_path else (None, [])

    def sample_train(self, rng: random.Random) -> Problem:
        return rng.choice(self.train)

    def test_problems(self, n: int) -> list[Problem]:
        if self.test is None:
            raise DatasetError("task.test_path: needed for evaluation of a prompts task")
        return self.test[:n]

    def located_prompts(self, n_test: int) -> list[tuple[str, str]]:
        test = list(zip(self.test_where, self.test or []))[:n_test]
        return [(where, p.prompt) for where, p in [*zip(self.train_where, self.train), *test]]

    def domains(self) -> dict[str | None, str]:
        first: dict[str | None, str] = {}
        for problem, where in zip(self.train + (self.test or []), self.train_where + self.test_where):
            first.setdefault(problem.domain, where)
        return first

    def check_complete(self, field: str, why: str) -> None:
        missing = next((w for p, w in zip(self.train, self.train_where) if getattr(p, field) is None), None)
        if missing is not None:
            column = {"solution": "completion"}.get(field, field)
            raise DatasetError(f"{missing}: {why}, but this row has no `{column}`")

    reward = AnswerVerifier()  # answer_format auto; build_task applies the task config's
