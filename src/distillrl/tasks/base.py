"""What every task provides: problems, a training stream, a held-out set and a verifier."""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Protocol

from distillrl.core.errors import UserError

FINAL_ANSWER = re.compile(r"#\s*(-?[0-9a-z\[\], ]*)")


@dataclass(frozen=True)
class Problem:
    """One prompt, with the reference answer and (when known) a worked solution."""

    prompt: str | list[dict]  # one user turn, or chat messages (rendered by text/chat.py)
    answer: str | None = None
    solution: str | None = None
    domain: str | None = None
    row: dict | None = field(default=None, compare=False, repr=False)  # its data row (a prompt file's), for rewards


def extract_final_answer(completion: str) -> str | None:
    """The text after the last `#` of a completion (up to the end), stripped; None when there is none."""
    matches = FINAL_ANSWER.findall(completion)
    return matches[-1].strip() if matches else None


def exact_match_reward(problem: Problem, completion: str) -> float:
    """1.0 when the completion's final answer (after its last `#`) equals the reference answer, else 0.0."""
    if problem.answer is None:
        raise ValueError(f"problem {problem.prompt!r} has no reference answer to verify against")
    return float(extract_final_answer(completion) == problem.answer.strip())


def answer_only_share(problem: Problem, cot_fraction: float, rng: random.Random) -> Problem:
    """`problem`, or (with probability 1 - cot_fraction, drawn from `rng` only when cot_fraction < 1, so a whole-
    solution stream is unchanged) the same problem with the answer-only solution `#ANSWER`. A solution without
    steps is returned as it is."""
    if cot_fraction < 1.0 and rng.random() >= cot_fraction and problem.solution != f"#{problem.answer}":
        return Problem(problem.prompt, problem.answer, f"#{problem.answer}", problem.domain)
    return problem


class Task(Protocol):
    name: str

    def domains(self) -> dict[str | None, str]:
        """Each domain its prompts carry, with where it first appears (for routing errors)."""

    def check_complete(self, field: str, why: str) -> None:
        """Raise (naming the file and line) when a training problem lacks `field` ("answer" to verify, or
        "solution" to train on); `why` says who needs it."""

    def sample_train(self, rng: random.Random) -> Problem:
        """Draw one training problem using `rng` (whose state the trainer checkpoints)."""

    def test_problems(self, n: int) -> list[Problem]:
        """The first `n` problems of the held-out split, always the same ones."""

    def located_prompts(self, n_test: int) -> list[tuple[str, str]]:
        """(where, prompt) for every prompt a run with `n_test` held-out problems may give a model: the rows of
        prompt files, or the held-out problems of a generator (its training prompts are drawn alike)."""

    def reward(self, problem: Problem, completion: str) -> float:
        """Verifier: 1.0 for a correct completion, 0.0 otherwise."""


TEST_BUCKETS = 5  # one prompt in five (by hash) is held out
TEST_SEED = 20261125
VALIDATION_SEED = 20261126  # the validation set: training-split prompts drawn from their own fixed stream
MAX_DRAWS = 10_000  # draws without a usable (or a new) problem before a generator is declared too small


def is_test_prompt(prompt: str) -> bool:
    """True when `prompt` belongs to the held-out split (a fixed hash bucket)."""
    digest = hashlib.sha256(prompt.encode()).digest()
    return digest[0] % TEST_BUCKETS == 0


def located_test_prompts(task: Task, n: int) -> list[tuple[str, str]]:
    """The first `n` held-out prompts of a generated task, each located as `task NAME: held-out prompt i`."""
    return [(f"task {task.name}: held-out prompt {i}", p.prompt) for i, p in enumerate(task.test_problems(n))]


class GeneratedTask:
    """A task whose problems are drawn from a generator; train and test are disjoint by a hash of the prompt.

    Subclasses set `name` and implement `make_problem(rng)`; every problem has an answer (always rewardable).
    """

    name = "generated"

    def make_problem(self, rng: random.Random) -> Problem:
        raise NotImplementedError

    def _sample(self, rng: random.Random, test: bool) -> Problem:
        for _ in range(MAX_DRAWS):
            problem = self.make_problem(rng)
            if is_test_prompt(problem.prompt) == test:
                return problem
        split = "held-out" if test else "training"
        raise UserError(f"task: the {self.name} difficulty gave no {split} problem in {MAX_DRAWS:,} draws (it holds too "
                        "few distinct problems); make it harder")  # fmt: skip

    def sample_train(self, rng: random.Random) -> Problem:
        return self._sample(rng, test=False)

    def test_problems(self, n: int) -> list[Problem]:
        """The first `n` distinct held-out problems; fails once MAX_DRAWS draws in a row bring nothing new."""
        return self._distinct_problems(n, test=True)

    def validation_problems(self, n: int) -> list[Problem]:
        """The first `n` distinct problems of a fixed stream of *training-split* prompts (VALIDATION_SEED): for
        choosing settings (learning rates) without looking at the held-out problems. Training draws from the same
        split, so a validation prompt may also be trained on (rarely: the generators hold far more problems)."""
        return self._distinct_problems(n, test=False)

    def _distinct_problems(self, n: int, test: bool) -> list[Problem]:
        rng, seen, problems, stale = random.Random(TEST_SEED if test else VALIDATION_SEED), set(), [], 0
        while len(problems) < n:
            problem = self._sample(rng, test=test)
            if problem.prompt in seen:
                stale += 1
                if stale == MAX_DRAWS:
                    raise UserError(
                        f"task: the {self.name} difficulty is too small to hold {n} distinct "
                        f"{'held-out' if test else 'validation'} problems (found {len(problems)}); make it harder, "
                        "or lower eval.num_prompts"
                    )
                continue
            stale = 0
            seen.add(problem.prompt)
            problems.append(problem)
        return problems

    def located_prompts(self, n_test: int) -> list[tuple[str, str]]:
        return located_test_prompts(self, n_test)

    def domains(self) -> dict[str | None, str]:
        return {self.name: f"task.name {self.name!r}"}

    def check_complete(self, field: str, why: str) -> None:
        return None  # generated problems always carry both

    reward = staticmethod(exact_match_reward)
