"""Tasks: prompt sources with verifiers."""

from __future__ import annotations

from distillrl.tasks.arith import ArithTask
from distillrl.tasks.base import Problem, Task
from distillrl.tasks.prompts import PromptsTask


def build_task(config) -> Task:
    """The task named by a TaskConfig."""
    if config.name == "arith":
        return ArithTask(config.difficulty, config.cot_fraction)
    return PromptsTask(config.train_path, config.test_path)


__all__ = ["ArithTask", "Problem", "PromptsTask", "Task", "build_task"]
