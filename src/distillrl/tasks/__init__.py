"""Tasks: prompt sources with verifiers."""

from __future__ import annotations

from distillrl.tasks.arith import ArithTask
from distillrl.tasks.base import Problem, Task
from distillrl.tasks.lists import ListsTask
from distillrl.tasks.mix import MixTask
from distillrl.tasks.prompts import PromptsTask


def build_task(config) -> Task:
    """The task named by a TaskConfig."""
    if config.name == "arith":
        return ArithTask(config.difficulty, config.cot_fraction)
    if config.name == "lists":
        return ListsTask(config.lists)
    if config.name == "mix":
        return MixTask([ArithTask(config.difficulty, config.cot_fraction), ListsTask(config.lists)])
    return PromptsTask(config.train_path, config.test_path, config.train_split, config.test_split, config.columns,
                       config.dataset_config)


__all__ = ["ArithTask", "ListsTask", "MixTask", "Problem", "PromptsTask", "Task", "build_task"]
