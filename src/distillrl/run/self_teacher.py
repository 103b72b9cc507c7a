"""The student as its own teacher (`teacher.path: self`), as TRL's SDFT and SDPO trainers have it.

- base: the starting student, frozen: loaded again from `student.path` (the copy that the default reference also
  uses), or with LoRA the student itself with its adapter disabled (no copy);
- live: the current student, scored without gradient in eval mode (no copy);
- ema: a copy whose trainable weights follow the student's after every `sync_every`-th optimizer step,
  p_ema <- r p_ema + (1 - r) p with r = `ema_rate` (TRL's teacher_update_rate is 1 - r); its weights and its
  count of optimizer steps go into each checkpoint's trainer state, so `--resume` restores it bit-identically.

Each is at most one extra copy of the weights. The teacher sees its own prompt when `teacher.prompt` is set
(scoring/privileged.py); without one, base and live score the student's own sequences.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from transformers import PreTrainedModel

from distillrl.scoring.frozen import FrozenScorer
from distillrl.scoring.teachers import LocalTeacher


@dataclass
class EmaTeacher(LocalTeacher):
    """A frozen copy of the student whose trainable weights are the exponential average of the student's."""

    student: PreTrainedModel | None = None
    rate: float = 0.95
    sync_every: int = 1
    optimizer_steps: int = 0
    pairs: list[tuple[str, torch.Tensor, torch.nn.Parameter]] = field(default_factory=list)  # (name, p_ema, p)

    @classmethod
    def of(cls, student: PreTrainedModel, rate: float, sync_every: int, device: torch.device) -> "EmaTeacher":
        copied = copy.deepcopy(student).to(device).requires_grad_(False).eval()
        weights = dict(copied.named_parameters())
        pairs = [(name, weights[name], p) for name, p in student.named_parameters() if p.requires_grad]
        return cls(FrozenScorer(copied), student, rate, sync_every, pairs=pairs)

    @torch.no_grad()
    def update(self, *_) -> None:
        """After an optimizer step (a step post hook): every `sync_every`-th, p_ema <- r p_ema + (1 - r) p."""
        self.optimizer_steps += 1
        if self.optimizer_steps % self.sync_every == 0:
            for _, average, weight in self.pairs:
                average.mul_(self.rate).add_(weight.detach().to(average.device, average.dtype), alpha=1 - self.rate)

    def state_dict(self) -> dict:
        return {"optimizer_steps": self.optimizer_steps, "weights": {name: p.detach().clone() for name, p, _ in self.pairs}}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        self.optimizer_steps = state["optimizer_steps"]
        for name, average, _ in self.pairs:
            average.copy_(state["weights"][name])


def self_teacher_scorer(teacher, student: PreTrainedModel, base: Callable[[], PreTrainedModel],
                        device: torch.device) -> LocalTeacher:  # fmt: skip
    """The scorer of a self-teacher (`teacher`: its TeacherConfig); `base` loads the starting student's weights."""
    if teacher.self == "live":
        return LocalTeacher(FrozenScorer(student))
    if teacher.self == "ema":
        return EmaTeacher.of(student, teacher.ema_rate, teacher.sync_every, device)
    if hasattr(student, "peft_config"):
        return LocalTeacher(FrozenScorer(student, adapter_disabled=True))
    return LocalTeacher(FrozenScorer(base()))


def ema_teachers(teachers: list) -> dict[str, EmaTeacher]:
    """The ema self-teachers among a run's Teachers, by name."""
    return {teacher.name: teacher.scorer for teacher in teachers if isinstance(teacher.scorer, EmaTeacher)}


def attach_ema_teachers(teachers: list, optimizer: torch.optim.Optimizer, saved: dict | None) -> None:
    """Each ema self-teacher follows `optimizer`'s steps; a resumed trainer state (`saved`) restores it."""
    for name, ema in ema_teachers(teachers).items():
        if saved is not None:
            ema.load_state_dict(saved["ema_teachers"][name])
        optimizer.register_step_post_hook(ema.update)


def ema_teacher_state(teachers: list) -> dict:
    """What a checkpoint keeps of the ema self-teachers: {"ema_teachers": {name: state}}, or {} without one."""
    emas = ema_teachers(teachers)
    return {"ema_teachers": {name: ema.state_dict() for name, ema in emas.items()}} if emas else {}
