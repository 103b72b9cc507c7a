"""G-OPD (arXiv 2602.12125): on-policy distillation as dense KL-constrained RL with a reward scale.

Reward r_t = lambda [log pi_T(y_t) - log pi_ref(y_t)], penalty log pi_theta(y_t) - log pi_ref(y_t). The optimum
is log pi* = lambda log pi_T + (1 - lambda) log pi_ref + const: lambda = 1 is OPD (pi_ref cancels), lambda < 1
interpolates towards the reference, lambda > 1 extrapolates beyond the teacher (ExOPD). Choosing pi_ref = the
teacher's pre-RL base makes the reward the teacher's RL gain (reward correction).
"""

from __future__ import annotations

from torch import Tensor

from distillrl.objectives.batch import Batch
from distillrl.objectives.reverse_kl import importance_sampled_loss


def gopd_advantages(old_logprobs: Tensor, teacher_logprobs: Tensor, reference_logprobs: Tensor, reward_scale: float) -> Tensor:
    """Per-token ascent advantage A_t = lambda (log pi_T - log pi_ref) - (log pi_old - log pi_ref); no group
    normalisation, discount 0."""
    return reward_scale * (teacher_logprobs - reference_logprobs) - (old_logprobs - reference_logprobs)


class GOPD:
    """Importance-sampling loss on the student's samples with the G-OPD advantage."""

    needs = frozenset({"old_logprobs", "teacher_logprobs", "reference_logprobs"})

    def __init__(self, reward_scale: float = 1.0):
        self.reward_scale = reward_scale

    def __call__(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        advantages = gopd_advantages(batch.old_logprobs, batch.teacher_logprobs, batch.reference_logprobs, self.reward_scale)
        loss = importance_sampled_loss(batch.policy_logprobs(), batch.old_logprobs, advantages, batch.num_tokens)
        n = batch.num_tokens
        return loss, {
            "loss": loss.item(),
            "reverse_kl": (batch.old_logprobs - batch.teacher_logprobs).sum().item() / n,
            "gopd_reward": self.reward_scale * (batch.teacher_logprobs - batch.reference_logprobs).sum().item() / n,
        }
