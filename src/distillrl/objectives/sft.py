"""Supervised fine-tuning (sequence-level KD when the sequences are the teacher's)."""

from __future__ import annotations

from torch import Tensor

from distillrl.objectives.batch import Batch


def cross_entropy_loss(policy_logprobs: Tensor, num_tokens: float) -> Tensor:
    """L = -(1/num_tokens) sum_t log pi_theta(y_t | c_t) over the completion tokens."""
    return -policy_logprobs.sum() / num_tokens


class SFT:
    """Cross-entropy on given sequences (dataset solutions or teacher samples)."""

    needs = frozenset()

    def __call__(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        loss = cross_entropy_loss(batch.policy_logprobs(), batch.num_tokens)
        return loss, {"loss": loss.item()}
