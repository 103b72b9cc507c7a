"""Layer 8, objectives: pure functions of a Batch returning (loss, metrics), one module per family. They never
import a scorer backend, an engine, the config, a task or the models (the import-linter contract says so).

Each objective declares the per-token signals it `needs` from the scorers, out of SIGNALS.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from distillrl.objectives.batch import Batch
from distillrl.objectives.divergences import Divergence
from distillrl.objectives.gopd import GOPD
from distillrl.objectives.hybrid import Hybrid
from distillrl.objectives.policy_gradient import PolicyGradient
from distillrl.objectives.reverse_kl import SampledReverseKL
from distillrl.objectives.sft import SFT

SIGNALS = ("old_logprobs", "teacher_logprobs", "teacher_topk", "teacher_logits", "reference_logprobs", "rewards")


class Objective(Protocol):
    needs: frozenset[str]  # signals (out of SIGNALS) the trainer must score before calling it

    def __call__(self, batch: Batch) -> tuple[Tensor, dict[str, float]]: ...


def build_objective(config) -> Objective:
    """The objective named by `config` (an ObjectiveConfig)."""
    name = config.name
    if name == "hybrid":
        return Hybrid([(term.name, term.weight, build_objective(term)) for term in config.terms])
    if name == "sft":
        return SFT()
    if name == "reverse_kl" and config.resolved_fidelity == "sampled":
        return SampledReverseKL()
    if name in ("reverse_kl", "forward_kl", "jsd", "skew_kl"):
        temperature = config.temperature if name == "forward_kl" else 1.0
        return Divergence(name, config.resolved_fidelity, temperature, config.beta, config.skew_alpha, config.skew_reverse)
    if name == "gopd":
        return GOPD(config.reward_scale)
    if name in ("grpo", "rlad"):
        return PolicyGradient(name, config.clip_low, config.clip_high, config.kl_coef, config.rlad_alpha,
                              config.rlad_teacher_clamp)  # fmt: skip
    raise ValueError(f"objective.name: unknown objective {name!r}")
