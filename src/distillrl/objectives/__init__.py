"""Objectives: pure functions of a Batch returning (loss, metrics), one module per family."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from distillrl.batch import Batch
from distillrl.objectives.divergences import Divergence
from distillrl.objectives.reverse_kl import ReverseKL
from distillrl.objectives.sft import SFT


class Objective(Protocol):
    teacher_fidelity: str | None  # None, "sampled" or "full": what the teacher must provide
    needs_old_logprobs: bool

    def __call__(self, batch: Batch) -> tuple[Tensor, dict[str, float]]: ...


def build_objective(config) -> Objective:
    """The objective named by `config.objective` (an ObjectiveConfig)."""
    if config.name == "reverse_kl":
        return ReverseKL(config.estimator)
    if config.name == "sft":
        return SFT()
    if config.name in ("forward_kl", "jsd", "skew_kl"):
        return Divergence(config.name, config.temperature, config.beta, config.alpha, config.skew_reverse)
    raise ValueError(f"objective.name: unknown objective {config.name!r}")
