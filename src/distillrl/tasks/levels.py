"""Named task levels: the task settings (difficulty, completion length) a level stands for.

`standard` is the built-in tasks' defaults (the zoo's first models and the first reproduction report). `hard`
is the test bed with room for RL: arith with 3 to 5 operations (3 to 5 chained steps, then the answer; at most 62
characters of solution), where a small SFT'd model is decent but far from saturated, and lists of 4 to 8 values
under `sum` (running sums: up to 7 steps) or `sort`, the two operations whose answers take work (`rev`, `max` and
`min` saturate a 3 x 96 model at 0.99, leaving RL nothing to find).
"""

from __future__ import annotations

TASK_LEVELS: dict[str, dict] = {
    "standard": {},
    "hard": {"difficulty": {"min_ops": 3, "max_ops": 5}, "lists": {"min_length": 4, "max_length": 8, "operations": ["sum", "sort"]}},
}
"""Each level's TaskConfig fields (merged over the task's name)."""

MAX_NEW_TOKENS = {"standard": 48, "hard": 64}
"""The longest completion each level needs (rollouts and evaluation)."""


def level_task(name: str, level: str, **fields) -> dict:
    """The TaskConfig data of task `name` at `level` (a KeyError names an unknown level), with `fields` on top."""
    return {"name": name, **TASK_LEVELS[level], **fields}
