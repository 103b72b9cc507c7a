"""Reverse KL to the teacher, KL(pi_theta || pi_T): on-policy distillation (OPD)."""

from __future__ import annotations

import torch
from torch import Tensor

from distillrl.batch import Batch
from distillrl.objectives.divergences import kl
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
    return ChunkedLogits.map(kl, [policy, teacher], chunk_size=chunk_size)


class ReverseKL:
    """OPD: minimise the per-token reverse KL on the student's own samples.

    estimator `sampled`: importance-sampling loss with A_t = log pi_T(y_t) - log pi_old(y_t) (needs only the
    teacher's log-prob of each realised token); estimator `full`: the exact KL over the vocabulary.
    """

    def __init__(self, estimator: str = "sampled"):
        self.estimator = estimator
        self.teacher_fidelity = estimator  # what the trainer must score with the teacher
        self.needs_old_logprobs = estimator == "sampled"

    def __call__(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        if self.estimator == "full":
            kl = full_reverse_kl(batch.policy_logits, batch.teacher_logits, batch.chunk_size)
            loss = kl.sum() / batch.num_tokens
            return loss, {"loss": loss.item(), "reverse_kl": loss.item()}
        policy_logprobs = batch.policy_logprobs()
        advantages = sampled_reverse_kl_advantages(batch.old_logprobs, batch.teacher_logprobs)
        loss = importance_sampled_loss(policy_logprobs, batch.old_logprobs, advantages, batch.num_tokens)
        kl_estimate = -advantages.sum().item() / batch.num_tokens
        return loss, {"loss": loss.item(), "reverse_kl": kl_estimate}
