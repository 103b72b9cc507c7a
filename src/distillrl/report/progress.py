"""What a run prints as it goes, in a terminal or in a log file.

In a terminal rich draws a progress bar. Where stderr is not a terminal (a file, CI, `nohup`, Slurm) the bar is
not drawn, so `PlainProgress` prints a plain line every `log.every` steps and at each evaluation:

    step 20/250 | loss 0.4112 | KL 0.3907 | acc 0.540 | 5890 tok/s | 1.23 s/step | ETA 4m43s

`phase` prints one line before each long part of the start (loading, the teachers' and the student's first
evaluation), in a terminal or not.
"""

from __future__ import annotations

import time


def duration(seconds: float) -> str:
    """`42s`, `4m43s` or `2h05m`."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class PlainProgress:
    """Plain progress lines where no bar is drawn (`active`): every `every` steps, at each evaluation and at the
    last step. The ETA is the mean wall time of this run's steps so far times the steps left."""

    def __init__(self, console, total: int, start: int, every: int, active: bool):
        self.console, self.total, self.start, self.every, self.active = console, total, start, every, active
        self.started = time.perf_counter()

    def step(self, step: int, info: str, evaluated: bool = False) -> None:
        if not self.active or not (evaluated or step % self.every == 0 or step == self.total):
            return
        per_step = (time.perf_counter() - self.started) / max(step - self.start, 1)
        eta = f" | ETA {duration(per_step * (self.total - step))}" if step < self.total else ""
        self.console.print(f"step {step}/{self.total} | {info} | {per_step:.2f} s/step{eta}", highlight=False,
                           soft_wrap=True)  # fmt: skip


def phase(console, text: str) -> None:
    """One line saying what the run does next (`loading ...`, `evaluating ...`)."""
    console.print(f"{text} ...", highlight=False, soft_wrap=True)
