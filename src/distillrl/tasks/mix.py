"""Several generated domains in one task: each training prompt comes from a domain chosen uniformly."""

from __future__ import annotations

import random

from distillrl.tasks.base import GeneratedTask, Problem, exact_match_reward, located_test_prompts


class MixTask:
    """Draws each training problem from one of `tasks` (uniformly); the held-out and validation sets alternate
    domains."""

    name = "mix"

    def __init__(self, tasks: list[GeneratedTask]):
        self.tasks = tasks

    def sample_train(self, rng: random.Random) -> Problem:
        return rng.choice(self.tasks).sample_train(rng)

    def test_problems(self, n: int) -> list[Problem]:
        return self._alternating(n, "test_problems")

    def validation_problems(self, n: int) -> list[Problem]:
        return self._alternating(n, "validation_problems")

    def _alternating(self, n: int, split: str) -> list[Problem]:
        """`n` problems of one split (each task's `split` method), alternating domains."""
        shares = [len(range(i, n, len(self.tasks))) for i in range(len(self.tasks))]
        per_task = [getattr(task, split)(share) for task, share in zip(self.tasks, shares)]
        return [per_task[i % len(self.tasks)][i // len(self.tasks)] for i in range(n)]

    def located_prompts(self, n_test: int) -> list[tuple[str, str]]:
        return located_test_prompts(self, n_test)

    def domains(self) -> dict[str | None, str]:
        return {task.name: f"task.name 'mix' (domain of task {task.name!r})" for task in self.tasks}

    def check_complete(self, field: str, why: str) -> None:
        return None  # generated problems always carry both

    reward = staticmethod(exact_match_reward)
