"""Layer 4, tasks: prompt sources with verifiers (the built-in arith, lists and mix generators, prompt files and
`datasets`), answer formats and rewards, and the check that prompts fit a context. Tasks never import models."""

from __future__ import annotations

from distillrl.tasks.arith import ArithTask
from distillrl.tasks.base import Problem, Task
from distillrl.tasks.lists import ListsTask
from distillrl.tasks.mix import MixTask
from distillrl.tasks.prompts import PromptsTask
from distillrl.tasks.rewards import build_reward


def build_task(config) -> Task:
    """The task named by a TaskConfig, with the reward it asks for (`task.reward`, `task.answer_format`,
    `task.answer_match`; the built-in tasks keep their own `#` verifier by default)."""
    if config.name == "arith":
        task = ArithTask(config.difficulty, config.cot_fraction)
    elif config.name == "lists":
        task = ListsTask(config.lists, config.cot_fraction)
    elif config.name == "mix":
        task = MixTask([ArithTask(config.difficulty, config.cot_fraction), ListsTask(config.lists, config.cot_fraction)])
    else:
        task = PromptsTask(config.train_path, config.test_path, config.train_split, config.test_split, config.columns,
                           config.dataset_config)
    reward = build_reward(config)
    if reward is not None:
        task.reward = reward
    return task


__all__ = ["ArithTask", "ListsTask", "MixTask", "Problem", "PromptsTask", "Task", "build_task"]
