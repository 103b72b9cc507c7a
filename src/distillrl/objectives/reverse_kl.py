"""Reverse KL to the teacher, KL(pi_theta || pi_T): on-policy distillation (OPD)."""

from __future__ import annotations

import torch
from torch import Tensor

from distillrl.objectives.batch import Batch
from distillrl.objectives.divergences import reverse_kl_per_token
from distillrl.scoring.logits import ChunkedLogits


def importance_sampled_loss(policy_logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, num_tokens: float) -> Tensor:
    """L = -(1/num_tokens) sum_t rho_t * sg(A_t), with rho_t = exp(log pi_theta(y_t) - log pi_old(y_t)).

    The RL importance-sampling loss (Tinker's `importance_sampling`): at rho = 1 its gradient is
    -(1/num_tokens) sum_t A_t grad log pi_theta(y_t).
    """
    ratio = torch.exp(policy_logprobs - old_logprobs)
    return -(ratio * advantages.detach()).sum() / num_tokens


def sampled_reverse_kl_advantages(old_logprobs: Tensor, teacher_logprobs: Tensor) -> Tensor:
    """Per-token OPD advantage A_t = log pi_T(y_t | c_t) - log pi_old(y_t | c_t) (the negative reverse KL, discount 0)."""
    return teacher_logprobs - old_logprobs


def full_reverse_kl(policy: ChunkedLogits, teacher: ChunkedLogits, chunk_size: int = 1024) -> Tensor:
    """Exact per-position reverse KL, KL_t = sum_v pi_theta(v | c_t) [log pi_theta(v | c_t) - log pi_T(v | c_t)]: [N].

    Computed over chunks of positions; no [N, V] tensor is materialised (see ChunkedLogits.map).
    """
    return ChunkedLogits.map(reverse_kl_per_token, [policy, teacher], chunk_size=chunk_size)


class SampledReverseKL:
    """OPD with the sampled estimator (Tinker): importance-sampling loss with A_t = log pi_T(y_t) - log pi_old(y_t),
    needing only the teacher's log-prob of each realised token. (`topk`/`full` fidelity: `Divergence`.)"""

    needs = frozenset({"old_logprobs", "teacher_logprobs"})

    def __call__(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        advantages = sampled_reverse_kl_advantages(batch.old_logprobs, batch.teacher_logprobs)
        loss = importance_sampled_loss(batch.policy_logprobs(), batch.old_logprobs, advantages, batch.num_tokens)
        return loss, {"loss": loss.item(), "reverse_kl": -advantages.sum().item() / batch.num_tokens}
