"""A task's reward: the built-in answer verifier (`task.answer_format`, `task.answer_match`) or a Python callable
named by `task.reward: module:function` (or `path/to/file.py:function`).

A custom reward is called as `function(prompt, completion, row) -> float`, where `row` is the problem's data
row (a dict: `prompt`, `answer` and the other columns of a prompt file). It is imported, and its signature
checked, when the task is built: a wrong name fails before any model loads.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from distillrl.core.errors import UserError
from distillrl.tasks.answers import DEFAULT_TAG, answers_match, extract_answer, math_verify_module, stated
from distillrl.tasks.base import Problem
from distillrl.text.chat import reward_text


class RewardError(UserError):
    """A `task.reward` that cannot be imported or called."""


class DataWarning(UserWarning):
    """Data that works but may not mean what its author thought (answers read as numbers, unreachable answers)."""


def problem_row(problem: Problem) -> dict:
    """The data row of a problem: its file's row, or the fields of a generated problem."""
    if problem.row is not None:
        return dict(problem.row)
    return {"prompt": problem.prompt, "answer": problem.answer, "completion": problem.solution, "domain": problem.domain}


@dataclass(frozen=True)
class AnswerVerifier:
    """1.0 when the answer the completion states (in `answer_format`) equals the problem's answer (`answer_match`)."""

    answer_format: str = "auto"
    answer_match: str = "normalized"
    answer_tag: str = DEFAULT_TAG

    def __call__(self, problem: Problem, completion: str) -> float:
        if problem.answer is None:
            raise ValueError(f"problem {problem.prompt!r} has no reference answer to verify against")
        return float(answers_match(self.extract(completion), problem.answer, self.answer_match))

    def extract(self, completion: str) -> str | None:
        """The answer the completion states (None: none)."""
        return extract_answer(completion, self.answer_format, self.answer_tag)


@dataclass(frozen=True)
class CustomReward:
    """`task.reward`: function(prompt, completion, row) -> float."""

    spec: str
    function: Callable

    def __call__(self, problem: Problem, completion: str) -> float:
        value = self.function(problem.prompt, completion, problem_row(problem))
        try:
            return float(value)
        except (TypeError, ValueError):
            raise RewardError(f"task.reward: {self.spec} returned {value!r}, not a number") from None


def import_reward(spec: str) -> Callable:
    """The callable that `module:function` or `file.py:function` names; a RewardError naming what is missing."""
    module_name, _, function_name = spec.rpartition(":")
    if not module_name or not function_name:
        raise RewardError(f"task.reward: {spec!r} is not `module:function` (or `path/to/file.py:function`)")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser()
            if not path.is_file():
                raise RewardError(f"task.reward: {path}: no such file")
            module_spec = importlib.util.spec_from_file_location(f"distillrl_reward_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except RewardError:
        raise
    except ModuleNotFoundError as error:
        raise RewardError(f"task.reward: cannot import {module_name!r} ({error}; is it on PYTHONPATH? "
                          f"sys.path starts with {sys.path[:2]})") from None  # fmt: skip
    except Exception as error:  # the user's module failed while importing: say where
        raise RewardError(f"task.reward: importing {module_name!r} failed: {type(error).__name__}: {error}") from None
    function = getattr(module, function_name, None)
    if function is None:
        raise RewardError(f"task.reward: {module_name!r} has no {function_name!r}")
    if not callable(function):
        raise RewardError(f"task.reward: {spec} is a {type(function).__name__}, not a function")
    check_reward_signature(function, spec)
    return function


def check_reward_signature(function: Callable, spec: str) -> None:
    """A reward takes (prompt, completion, row); a RewardError naming `spec` when it cannot."""
    try:
        inspect.signature(function).bind("prompt", "completion", {})
    except TypeError as error:
        raise RewardError(f"task.reward: {spec} must take (prompt, completion, row): {error}") from None
    except ValueError:  # a builtin without a signature: trust it
        pass


def build_reward(config) -> Callable[[Problem, str], float] | None:
    """The reward a TaskConfig asks for: a custom `reward`, or the answer verifier of `answer_format` and
    `answer_match`; None when it asks for neither (the task keeps its own verifier)."""
    if config.reward:
        return CustomReward(config.reward, import_reward(config.reward))
    if config.answer_format is None and config.answer_match == "normalized" and config.name != "prompts":
        return None
    if config.answer_match == "math":
        math_verify_module()  # a missing library fails now, not at the first reward
    return AnswerVerifier(config.answer_format or "auto", config.answer_match, config.answer_tag)


def check_answers_reachable(problems: list[Problem], where: list[str], verifier: AnswerVerifier,
                            writable: Callable[[str], bool] = lambda text: True, trained: bool = True,
                            stop_strings: tuple[str, ...] = ()) -> None:  # fmt: skip
    """Each answer must be one the verifier can read, checked on the row's own completion when it has one, else on a
    completion made to state it.

    - A row with a completion (a `completion` column, or the last assistant turn of `messages`) is scored on it as
      the reward reads a rollout: up to its first stop string (`stop_strings`, excluded). A reference completion is
      meant to be right, so any that scores below 1 is a DataWarning (one line: the first such row, what the
      verifier read there, how many of the completions): the format likely is not the completions' own.
    - A row without one: a completion stating its answer (in the verifier's format, and `writable`: the student's
      tokenizer can write it) must score 1 (a `regex:` format cannot state one: not checked). A file none of whose
      answers can is a UserError naming it when the reward is `trained` on (a DataWarning when it only measures
      accuracy); some such rows are a DataWarning naming the first.

    Numbers read as floats (a parquet or `datasets` numeric column: "2" became 2.0) are a DataWarning: they are
    compared by value."""
    unreachable, misread, floats = [], [], []
    rows = dict(zip(where, problems))  # a file that is both the training and the held-out set counts once
    form = f"task.answer_format {verifier.answer_format!r}"
    for location, problem in rows.items():
        if problem.answer is None:
            continue
        if problem.row is not None and isinstance(problem.row.get("answer"), float):
            floats.append(location)
        if problem.solution is not None:
            text = reward_text(problem.solution, stop_strings)
            if verifier(problem, text) != 1.0:
                misread.append((location, f"{form} reads {verifier.extract(text)!r} from the row's own completion "
                                          f"{text!r:.80}, not its answer {problem.answer!r}"))  # fmt: skip
            continue
        completion = stated(problem.answer, verifier.answer_format, verifier.answer_tag)
        if completion is None:
            continue
        if not writable(completion):
            unreachable.append((location, f"the student's tokenizer cannot write {completion!r}"))
        elif verifier(problem, completion) != 1.0:
            unreachable.append((location, f"{form} does not read answer {problem.answer!r} back from {completion!r}"))
    if floats:
        warnings.warn(f"{floats[0]}: field `answer` is a number ({len(floats)} rows), not a string; answers are "
                      "compared by value (2 = 2.0), so write them as strings to compare text", DataWarning,
                      stacklevel=2)  # fmt: skip
    if misread:
        completed = sum(p.answer is not None and p.solution is not None for p in rows.values())
        warnings.warn(f"{misread[0][0]}: {misread[0][1]}; {len(misread)} of the {completed} dataset completions score "
                      "0 (set task.answer_format to the completions' form)", DataWarning, stacklevel=2)  # fmt: skip
    if not unreachable:
        return
    answered = sum(p.answer is not None and p.solution is None for p in rows.values())
    first, why = unreachable[0]
    if len(unreachable) == answered and trained:
        raise UserError(f"{first}: {why}; none of the {answered} answers can ever score 1 (set task.answer_format, "
                        "or task.reward)")  # fmt: skip
    warnings.warn(f"{first}: {why}; {len(unreachable)} of {answered} answers can never score 1", DataWarning,
                  stacklevel=2)


def check_task_answers(task, tokenizer, trained: bool = True, stop_strings: tuple[str, ...] = ()) -> None:
    """`check_answers_reachable` for the rows of a prompt-file task verified by the answer verifier, with the
    student's tokenizer deciding what it can write (a generated task's answers are its own, always reachable);
    `trained`: the objective learns from the reward (else the answers only measure accuracy); `stop_strings`: the
    run's (rollout.stop_strings), which end the text the reward reads."""
    if not isinstance(task.reward, AnswerVerifier) or not hasattr(task, "train_where"):
        return

    def writable(text: str) -> bool:
        return tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text

    problems, where = task.train + (task.test or []), task.train_where + task.test_where
    check_answers_reachable(problems, where, task.reward, writable, trained, stop_strings)


def check_eval_answers(task, n: int) -> None:
    """A DatasetError naming the first of the `n` held-out rows of a prompt-file task without an `answer` when the
    answer verifier scores them (a custom `task.reward` reads the whole row and needs none)."""
    if not isinstance(task.reward, AnswerVerifier) or getattr(task, "test", None) is None:
        return
    missing = next((w for p, w in zip(task.test_problems(n), task.test_where) if p.answer is None), None)
    if missing is not None:
        raise UserError(f"{missing}: accuracy compares each held-out completion with its row's `answer`, and this row "
                        "has none (give every held-out row an answer, or set task.reward)")  # fmt: skip
