"""What every task provides: problems, a training stream, a held-out set and a verifier."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Protocol

FINAL_ANSWER = re.compile(r"#\s*(-?[0-9a-z\[\], ]*)")


@dataclass(frozen=True)
class Problem:
    """One prompt, with the reference answer and (when known) a worked solution."""

    prompt: str
    answer: str | None = None
    solution: str | None = None
    domain: str | None = None


def extract_final_answer(completion: str) -> str | None:
    """The text after the last `#` of a completion (up to the end), stripped; None when there is none."""
    matches = FINAL_ANSWER.findall(completion)
    return matches[-1].strip() if matches else None


def exact_match_reward(problem: Problem, completion: str) -> float:
    """1.0 when the completion's final answer (after its last `#`) equals the reference answer, else 0.0."""
    if problem.answer is None:
        raise ValueError(f"problem {problem.prompt!r} has no reference answer to verify against")
    return float(extract_final_answer(completion) == problem.answer.strip())


class Task(Protocol):
    name: str

    def sample_train(self, rng: random.Random) -> Problem:
        """Draw one training problem using `rng` (whose state the trainer checkpoints)."""

    def test_problems(self, n: int) -> list[Problem]:
        """The first `n` problems of the held-out split, always the same ones."""

    def reward(self, problem: Problem, completion: str) -> float:
        """Verifier: 1.0 for a correct completion, 0.0 otherwise."""
