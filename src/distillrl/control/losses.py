"""Policy-distillation losses on states, written with the language-model side's per-token functions."""

from __future__ import annotations

import torch
from torch import Tensor

from distillrl.objectives.divergences import forward_kl_per_token, reverse_kl_per_token

KD_LOSSES = ("forward_kl", "reverse_kl", "nll")


def policy_kd_loss(student_logits: Tensor, teacher_logits: Tensor, loss: str, temperature: float = 1.0) -> Tensor:
    """Mean over states of the distillation loss:

    forward_kl (Rusu et al. 2016): KL(softmax(z_T / tau) || softmax(z_S)), tau sharpens (< 1) or softens the
    teacher; reverse_kl: KL(softmax(z_S) || softmax(z_T)) (mode-seeking); nll (behaviour cloning):
    -log softmax(z_S)[argmax z_T].
    """
    student = torch.log_softmax(student_logits, -1)
    if loss == "nll":
        return -student.gather(-1, teacher_logits.argmax(-1, keepdim=True)).mean()
    teacher = torch.log_softmax(teacher_logits / temperature, -1)
    if loss == "forward_kl":
        return forward_kl_per_token(student, teacher).mean()
    if loss == "reverse_kl":
        return reverse_kl_per_token(student, teacher).mean()
    raise ValueError(f"loss: unknown policy distillation loss {loss!r} (choose from {', '.join(KD_LOSSES)})")


def generalized_advantages(rewards: Tensor, values: Tensor, next_values: Tensor, dones: Tensor, terminated: Tensor,
                           gamma: float = 0.99, lam: float = 0.95) -> Tensor:  # fmt: skip
    """GAE over [T, E] rollouts: delta_t = r_t + gamma (1 - terminated_t) V(s_t+1) - V(s_t),
    A_t = delta_t + gamma lam (1 - done_t) A_t+1 (a time-limit truncation still bootstraps its final state)."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * (1.0 - terminated[t]) * next_values[t] - values[t]
        running = delta + gamma * lam * (1.0 - dones[t]) * running
        advantages[t] = running
    return advantages
