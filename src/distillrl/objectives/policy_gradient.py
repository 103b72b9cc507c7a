"""GRPO (verifiable reward, group-normalised advantage, clipped ratio) and RLAD, its teacher-anchored twin.

Both minimise the clipped surrogate -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A) on every completion token,
with A the GRPO advantage of the token's sequence, summed and divided by the step's completion-token count
(the global token mean of DAPO/Dr. GRPO, not per-sequence means). They differ only in the ratio r:
GRPO r = pi_theta / pi_old; RLAD (TRRD, arXiv 2602.22495) r = pi_theta / (pi_old^alpha pi_T^(1 - alpha)).
"""

from __future__ import annotations

import torch
from torch import Tensor

from distillrl.objectives.batch import Batch


def group_advantages(rewards: Tensor, group_index: Tensor, eps: float = 1e-6) -> Tensor:
    """A_i = (R_i - mean_G R) / (std_G R + eps) over the rows of each group: [B].

    std is the unbiased (n - 1) standard deviation, as in TRL and verl; a group of identical rewards gets A = 0.
    """
    groups, inverse = torch.unique(group_index, return_inverse=True)
    count = torch.zeros(len(groups), dtype=rewards.dtype, device=rewards.device).index_add_(0, inverse, torch.ones_like(rewards))
    mean = torch.zeros(len(groups), dtype=rewards.dtype, device=rewards.device).index_add_(0, inverse, rewards) / count
    squares = torch.zeros(len(groups), dtype=rewards.dtype, device=rewards.device).index_add_(0, inverse, (rewards - mean[inverse]) ** 2)
    std = (squares / (count - 1).clamp(min=1)).sqrt()
    return (rewards - mean[inverse]) / (std[inverse] + eps)


def groups_with_signal(rewards: Tensor, group_index: Tensor) -> int:
    """The number of groups whose rewards are not all equal. The others get A = 0 on every row (see
    `group_advantages`), so a step without any has a zero clipped surrogate and a zero policy gradient."""
    groups, inverse = torch.unique(group_index, return_inverse=True)
    high = torch.full((len(groups),), -torch.inf, dtype=rewards.dtype, device=rewards.device)
    low = torch.full((len(groups),), torch.inf, dtype=rewards.dtype, device=rewards.device)
    high, low = high.scatter_reduce(0, inverse, rewards, "amax"), low.scatter_reduce(0, inverse, rewards, "amin")
    return int((high > low).sum().item())


def clipped_surrogate(log_ratio: Tensor, advantages: Tensor, clip_low: float, clip_high: float) -> Tensor:
    """PPO's per-token loss -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A), r = exp(log_ratio): [N]."""
    ratio = torch.exp(log_ratio)
    return -torch.minimum(ratio * advantages, ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * advantages)


def rlad_log_ratio(policy_logprobs: Tensor, old_logprobs: Tensor, teacher_logprobs: Tensor, alpha: float,
                   teacher_clamp: float = 1.0) -> Tensor:  # fmt: skip
    """log r = alpha (log pi_theta - log pi_old) + (1 - alpha) clamp(log pi_theta - log pi_T, -c, c).

    The anchor is the geometric mixture pi_old^alpha pi_T^(1 - alpha); c = 1 is the paper's stabiliser.
    alpha = 1 is GRPO's ratio exactly (the teacher term is multiplied by 0).
    """
    teacher_term = (policy_logprobs - teacher_logprobs).clamp(-teacher_clamp, teacher_clamp)
    return alpha * (policy_logprobs - old_logprobs) + (1.0 - alpha) * teacher_term


def k3_kl(policy_logprobs: Tensor, reference_logprobs: Tensor) -> Tensor:
    """Schulman's k3 estimator of KL(pi_theta || pi_ref) per token: exp(ref - logp) - (ref - logp) - 1 (>= 0)."""
    delta = reference_logprobs - policy_logprobs
    return torch.exp(delta) - delta - 1.0


class PolicyGradient:
    """`grpo` or `rlad`: the clipped surrogate on group advantages, plus kl_coef * k3 KL to the reference."""

    def __init__(self, name: str, clip_low: float = 0.2, clip_high: float = 0.28, kl_coef: float = 0.0,
                 rlad_alpha: float = 0.5, rlad_teacher_clamp: float = 1.0):  # fmt: skip
        self.name, self.clip_low, self.clip_high, self.kl_coef = name, clip_low, clip_high, kl_coef
        self.rlad_alpha, self.rlad_teacher_clamp = rlad_alpha, rlad_teacher_clamp
        needs = {"old_logprobs", "rewards"}
        needs |= {"teacher_logprobs"} if name == "rlad" else set()
        needs |= {"reference_logprobs"} if kl_coef > 0 else set()
        self.needs = frozenset(needs)

    def log_ratio(self, batch: Batch, policy_logprobs: Tensor) -> Tensor:
        if self.name == "rlad":
            return rlad_log_ratio(policy_logprobs, batch.old_logprobs, batch.teacher_logprobs, self.rlad_alpha,
                                  self.rlad_teacher_clamp)  # fmt: skip
        return policy_logprobs - batch.old_logprobs

    def __call__(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        policy_logprobs = batch.policy_logprobs()
        advantages = group_advantages(batch.rewards, batch.group_index)[batch.sequence_index]
        log_ratio = self.log_ratio(batch, policy_logprobs)
        per_token = clipped_surrogate(log_ratio, advantages, self.clip_low, self.clip_high)
        n = batch.num_tokens
        ratio = log_ratio.detach().exp()
        clipped = ((ratio < 1 - self.clip_low) & (advantages < 0)) | ((ratio > 1 + self.clip_high) & (advantages > 0))
        metrics = {"clip_fraction": clipped.float().sum().item() / n}
        if self.kl_coef > 0:
            kl = k3_kl(policy_logprobs, batch.reference_logprobs)
            per_token = per_token + self.kl_coef * kl
            metrics["kl_to_reference"] = kl.detach().sum().item() / n
        loss = per_token.sum() / n
        return loss, {"loss": loss.item(), **metrics}
