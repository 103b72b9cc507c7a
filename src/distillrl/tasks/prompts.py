"""Prompt datasets from jsonl or parquet files, directories and `datasets.load_dataset` names, verified row by row.

Each row has a string `prompt` or chat `messages` (a list of `{"role", "content"}` turns: system, user, assistant,
...; a last assistant turn is the row's completion) and optionally `answer` (checked by the exact-match verifier),
`completion` (a reference solution, for SFT) and `domain`; `task.columns` maps these fields to other column names.
A bad row fails at load time naming its file and line (jsonl), or row (parquet, datasets).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from distillrl.core.errors import UserError, one_line
from distillrl.core.files import read_utf8_text
from distillrl.tasks.base import Problem
from distillrl.tasks.rewards import AnswerVerifier
from distillrl.text.chat import Prompt

OPTIONAL_FIELDS = ("answer", "completion", "domain")
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")
LOCAL_PREFIXES = ("/", "./", "../", "~")


class DatasetError(UserError):
    """A prompt file or row that cannot be used, formatted as `file:line: problem`."""


def _messages(value: object, where: str, name: str) -> list[dict]:
    """A row's chat turns, each `{"role": str, "content": str}` (other keys dropped)."""
    if not isinstance(value, list) or not value:
        raise DatasetError(f"{where}: field {name} must be a non-empty list of chat turns, got {value!r:.80}")
    turns = []
    for index, turn in enumerate(value):
        if not isinstance(turn, dict) or not isinstance(turn.get("role"), str) or not isinstance(turn.get("content"), str):
            raise DatasetError(f"{where}: field {name}: turn {index} must be an object with a string `role` and a "
                               f"string `content`, got {turn!r:.80}")  # fmt: skip
        turns.append({"role": turn["role"], "content": turn["content"]})
    return turns


def _problem_from_row(row: object, where: str, columns: dict[str, str] | None = None) -> Problem:
    columns = columns or {}

    def named(field: str) -> str:
        column = columns.get(field, field)
        return f"`{column}`" if column == field else f"`{column}` (task.columns.{field})"

    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected an object with a {named('prompt')} field, got {type(row).__name__}")
    prompt: Prompt | None = row.get(columns.get("prompt", "prompt"))
    messages = row.get(columns.get("messages", "messages"))
    values = {}
    for field in OPTIONAL_FIELDS:
        value = row.get(columns.get(field, field))
        if value is not None and not isinstance(value, (str, int, float)):
            raise DatasetError(f"{where}: field {named(field)} must be a string or number, got {type(value).__name__}")
        values[field] = None if value is None else str(value)
    if messages is not None and prompt is not None:
        raise DatasetError(f"{where}: the row has both {named('prompt')} and {named('messages')}; give one")
    if messages is not None:
        prompt = _messages(messages, where, named("messages"))
        if prompt[-1]["role"] == "assistant":  # the conversation's answer: the row's completion
            if values["completion"] is not None:
                raise DatasetError(f"{where}: the row has a {named('completion')} and {named('messages')} that end "
                                   "with an assistant turn; give one")  # fmt: skip
            values["completion"], prompt = prompt[-1]["content"], prompt[:-1]
        if not prompt:
            raise DatasetError(f"{where}: field {named('messages')} holds only the assistant's answer, no prompt")
    elif not isinstance(prompt, str) or not prompt:
        raise DatasetError(f"{where}: field {named('prompt')} must be a non-empty string (or give {named('messages')}), "
                           f"got {prompt!r:.80}")  # fmt: skip
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
    return [(row, f"{path}: row {i}") for i, row in enumerate(table.to_pylist())]


def _dataset_rows(source: str, split: str, dataset_config: str | None, field: str) -> list[tuple[object, str]]:
    """Each row of a `datasets` dataset (a save_to_disk directory, a directory of data files or a load_dataset name)
    as a dict, and where it is (`source [split]: row i`)."""
    import datasets

    datasets.disable_progress_bars()
    path = Path(source).expanduser()
    try:
        if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
            dataset = datasets.load_from_disk(str(path))
            if isinstance(dataset, datasets.DatasetDict):
                if split not in dataset:
                    raise DatasetError(f"{field}: {source} has no split {split!r} (splits: {', '.join(dataset)})")
                dataset = dataset[split]
        else:
            dataset = datasets.load_dataset(str(path) if path.is_dir() else source, dataset_config, split=split)
    except DatasetError:
        raise
    except Exception as error:  # datasets raises many kinds (missing split, no network, bad files): all one answer
        raise DatasetError(f"{field}: cannot load {source!r} (split {split!r}) with datasets ({one_line(error)})") from None
    return [(row, f"{source} [{split}]: row {i}") for i, row in enumerate(dataset)]


def load_problems(path: str | Path, split: str = "train", columns: dict[str, str] | None = None,
                  dataset_config: str | None = None, field: str = "task.train_path",
                  ) -> tuple[list[Problem], list[str]]:  # fmt: skip
    """Load and verify every row of a `.jsonl`/`.json` or `.parquet` prompt file, a directory (of data files, or of a
    saved `datasets` dataset: `split` of it) or a `datasets.load_dataset` name (`split`, `dataset_config`): the
    problems and where each one is (`file:line`, `file: row i` or `source [split]: row i`)."""
    source = str(path)
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if path.is_dir() or (not path.exists() and not source.startswith(LOCAL_PREFIXES) and suffix not in FILE_SUFFIXES
                         and source.count("/") <= 1):  # fmt: skip
        rows = _dataset_rows(source, split, dataset_config, field)
    elif not path.is_file():
        raise DatasetError(f"{path}: no such file")
    elif suffix in (".jsonl", ".json"):
        rows = _jsonl_rows(path)
    elif suffix == ".parquet":
        rows = _parquet_rows(path)
    else:
        raise DatasetError(f"{path}: unsupported format {suffix!r} (use .jsonl or .parquet, a directory or a "
                           "datasets name)")  # fmt: skip
    if not rows:
        raise DatasetError(f"{source}: no rows")
    return [_problem_from_row(row, where, columns) for row, where in rows], [where for _, where in rows]


class PromptsTask:
    """A task over prompt files: training draws uniformly from `train_path`, evaluation reads `test_path`."""

    name = "prompts"

    def __init__(self, train_path: str, test_path: str | None = None, train_split: str = "train",
                 test_split: str = "test", columns: dict[str, str] | None = None,
                 dataset_config: str | None = None):  # fmt: skip
        self.train, self.train_where = load_problems(train_path, train_split, columns, dataset_config)
        self.test, self.test_where = (load_problems(test_path, test_split, columns, dataset_config, "task.test_path")
                                      if test_path else (None, []))  # fmt: skip

    def sample_train(self, rng: random.Random) -> Problem:
        return rng.choice(self.train)

    def keep_train(self, keep: list[bool]) -> None:
        """Train on the rows whose `keep` is true only."""
        self.train, self.train_where = [[x for x, k in zip(xs, keep) if k] for xs in (self.train, self.train_where)]

    def test_problems(self, n: int) -> list[Problem]:
        if self.test is None:
            raise DatasetError("task.test_path: needed for evaluation of a prompts task")
        return self.test[:n]

    def located_prompts(self, n_test: int) -> list[tuple[str, Prompt]]:
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
