"""Prompt datasets from jsonl or parquet files (read through `datasets`), verified row by row.

Each row has a string `prompt` and optionally `answer` (checked by the exact-match verifier), `completion`
(a reference solution, for SFT) and `domain`. A bad row fails at load time naming its file and line (jsonl)
or row (parquet).
"""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path

from distillrl.tasks.base import Problem, exact_match_reward

OPTIONAL_FIELDS = ("answer", "completion", "domain")


class DatasetError(ValueError):
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
    return Problem(prompt=prompt, answer=values["answer"], solution=values["completion"], domain=values["domain"])


def _check_jsonl(path: Path) -> None:
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path}:{line_number}: invalid JSON ({error.msg} at column {error.colno})") from None
            _problem_from_row(row, f"{path}:{line_number}")


@contextlib.contextmanager
def datasets_quiet():
    """`datasets` without its progress bars (a prompt file loads in a blink; its bars would only clutter the
    run's output); their previous setting is restored after."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield datasets
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def load_problems(path: str | Path) -> tuple[list[Problem], list[str]]:
    """Load and verify every row of a `.jsonl`/`.json` or `.parquet` prompt file: the problems and where each
    one is (`file:line` or `file: row i`)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        _check_jsonl(path)  # exact line numbers before `datasets` parses it
        with datasets_quiet() as datasets:
            dataset = datasets.load_dataset("json", data_files=str(path), split="train")
        where = lambda i: f"{path}:{i + 1}"  # noqa: E731
    elif suffix == ".parquet":
        with datasets_quiet() as datasets:
            dataset = datasets.load_dataset("parquet", data_files=str(path), split="train")
        where = lambda i: f"{path}: row {i}"  # noqa: E731
    else:
        raise DatasetError(f"{path}: unsupported format {suffix!r} (use .jsonl or .parquet)")
    if "prompt" not in dataset.column_names:
        raise DatasetError(f"{where(0)}: missing field `prompt` (columns: {', '.join(dataset.column_names)})")
    problems = [_problem_from_row(row, where(i)) for i, row in enumerate(dataset)]
    if not problems:
        raise DatasetError(f"{path}: no rows")
    return problems, [where(i) for i in range(len(problems))]


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

    reward = staticmethod(exact_match_reward)
