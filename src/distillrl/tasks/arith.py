"""The built-in verifiable task: integer arithmetic with a chain-of-thought solution.

`5+(2*3)=` is solved as `2*3=6;5+6=11;#11`: one `a op b=c;` step per operation in post-order, then the
final answer after `#`. Difficulty is set by the number of operations and the operand range.

Train and test splits are disjoint by construction: a problem belongs to the test split exactly when a hash
of its prompt falls in the test bucket, and each split only ever yields its own problems.
"""

from __future__ import annotations

import ast
import random
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from distillrl.tasks.base import GeneratedTask, Problem, answer_only_share

OPERATORS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


class ArithDifficulty(BaseModel):
    """The difficulty knob: how many operations and how large the operands are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_ops: int = Field(1, ge=1, description="fewest operations in a problem")
    max_ops: int = Field(3, ge=1, le=6, description="most operations in a problem")
    max_operand: int = Field(9, ge=1, le=999, description="operands are drawn from 0..max_operand")
    operators: str = Field("+-*", description="the operators used, a subset of '+-*'")

    @model_validator(mode="after")
    def _check(self) -> "ArithDifficulty":
        if self.min_ops > self.max_ops:
            raise ValueError(f"min_ops ({self.min_ops}) must be <= max_ops ({self.max_ops})")
        if not self.operators or set(self.operators) - set(OPERATORS):
            raise ValueError(f"operators must be a non-empty subset of '+-*', got {self.operators!r}")
        return self


@dataclass
class _Node:
    value: int
    text: str  # rendered expression
    compound: bool


def _build(rng: random.Random, n_ops: int, difficulty: ArithDifficulty, steps: list[str]) -> _Node:
    if n_ops == 0:
        value = rng.randint(0, difficulty.max_operand)
        return _Node(value, str(value), compound=False)
    left_ops = rng.randint(0, n_ops - 1)
    left = _build(rng, left_ops, difficulty, steps)
    right = _build(rng, n_ops - 1 - left_ops, difficulty, steps)
    op = rng.choice(difficulty.operators)
    value = OPERATORS[op](left.value, right.value)
    steps.append(f"{left.value}{op}{right.value}={value}")
    render = lambda node: f"({node.text})" if node.compound else node.text  # noqa: E731
    return _Node(value, f"{render(left)}{op}{render(right)}", compound=True)


def make_problem(rng: random.Random, difficulty: ArithDifficulty) -> Problem:
    """Draw one problem: a random expression tree, its prompt `expr=`, its steps and answer."""
    steps: list[str] = []
    root = _build(rng, rng.randint(difficulty.min_ops, difficulty.max_ops), difficulty, steps)
    answer = str(root.value)
    return Problem(prompt=f"{root.text}=", answer=answer, solution=";".join(steps) + f";#{answer}", domain="arith")


def answer_of(prompt: str) -> str | None:
    """The answer to an arith prompt (`3+(4*2)=` -> "11"), or None when `prompt` is not integers joined by
    + - * (with parentheses) followed by `=`."""
    if not prompt.endswith("=") or not prompt[:-1] or set(prompt[:-1]) - set("0123456789+-*() "):
        return None
    operators = {ast.Add: OPERATORS["+"], ast.Sub: OPERATORS["-"], ast.Mult: OPERATORS["*"]}

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in operators:
            return operators[type(node.op)](value(node.left), value(node.right))
        raise ValueError(f"not an arith expression: {ast.dump(node)}")

    try:
        return str(value(ast.parse(prompt[:-1], mode="eval").body))
    except (SyntaxError, ValueError):
        return None


class ArithTask(GeneratedTask):
    """Arithmetic with chain of thought; `reward` is the exact-match verifier on the final answer.

    `cot_fraction` < 1 makes that share of the *training* solutions answer-only (`#11`, no steps): the data
    of a student that does not think step by step. Held-out problems always carry the full solution.
    """

    name = "arith"

    def __init__(self, difficulty: ArithDifficulty | None = None, cot_fraction: float = 1.0):
        self.difficulty = difficulty or ArithDifficulty()
        self.cot_fraction = cot_fraction

    def make_problem(self, rng: random.Random) -> Problem:
        return make_problem(rng, self.difficulty)

    def sample_train(self, rng: random.Random) -> Problem:
        return answer_only_share(self._sample(rng, test=False), self.cot_fraction, rng)
