"""The second built-in domain: list manipulation with a verifier (a stand-in for code).

`sort[3,1,2]=` is answered `#[1,2,3]`; `sum[3,1,2]=` shows its running sums, `3+1=4;4+2=6;#6`.
Operations: rev, sort, max, min, sum. Difficulty: list length and value range.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field, model_validator

from distillrl.tasks.base import GeneratedTask, Problem, answer_only_share

LIST_OPERATIONS = {
    "rev": lambda xs: "[" + ",".join(map(str, reversed(xs))) + "]",
    "sort": lambda xs: "[" + ",".join(map(str, sorted(xs))) + "]",
    "max": lambda xs: str(max(xs)),
    "min": lambda xs: str(min(xs)),
    "sum": lambda xs: str(sum(xs)),
}


class ListsDifficulty(BaseModel):
    """How long the lists are, how large their values, and which operations appear."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_length: int = Field(2, ge=1, description="shortest list")
    max_length: int = Field(5, ge=1, le=12, description="longest list")
    max_value: int = Field(9, ge=1, le=99, description="values are drawn from 0..max_value")
    operations: list[str] = Field(default_factory=lambda: list(LIST_OPERATIONS), description="out of rev, sort, max, min, sum")

    @model_validator(mode="after")
    def _check(self) -> "ListsDifficulty":
        if self.min_length > self.max_length:
            raise ValueError(f"min_length ({self.min_length}) must be <= max_length ({self.max_length})")
        unknown = [op for op in self.operations if op not in LIST_OPERATIONS]
        if not self.operations or unknown:
            raise ValueError(f"operations must be a non-empty subset of {', '.join(LIST_OPERATIONS)}, got {unknown}")
        return self


def running_sum_steps(values: list[int]) -> str:
    """`3+1=4;4+2=6;` for [3, 1, 2]: one step per addition."""
    steps, total = [], values[0]
    for value in values[1:]:
        steps.append(f"{total}+{value}={total + value};")
        total += value
    return "".join(steps)


def make_list_problem(rng: random.Random, difficulty: ListsDifficulty) -> Problem:
    """Draw one problem: an operation and a list, its prompt `op[a,b,c]=`, answer and solution."""
    operation = rng.choice(difficulty.operations)
    values = [rng.randint(0, difficulty.max_value) for _ in range(rng.randint(difficulty.min_length, difficulty.max_length))]
    answer = LIST_OPERATIONS[operation](values)
    steps = running_sum_steps(values) if operation == "sum" else ""
    prompt = f"{operation}[{','.join(map(str, values))}]="
    return Problem(prompt=prompt, answer=answer, solution=f"{steps}#{answer}", domain="lists")


class ListsTask(GeneratedTask):
    """List manipulation; `reward` is the exact-match verifier on the final answer.

    `cot_fraction` < 1 makes that share of the *training* `sum` solutions answer-only (`#6`, no running sums), as
    arith's does for its steps; the other operations have no steps to skip. Held-out problems are always whole.
    """

    name = "lists"

    def __init__(self, difficulty: ListsDifficulty | None = None, cot_fraction: float = 1.0):
        self.difficulty = difficulty or ListsDifficulty()
        self.cot_fraction = cot_fraction

    def make_problem(self, rng: random.Random) -> Problem:
        return make_list_problem(rng, self.difficulty)

    def sample_train(self, rng: random.Random) -> Problem:
        return answer_only_share(self._sample(rng, test=False), self.cot_fraction, rng)
