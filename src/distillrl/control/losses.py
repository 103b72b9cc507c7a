"""Policy-distillation losses on states: over discrete actions with the language-model side's per-token
functions, over Box actions in closed form for diagonal Gaussians."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from distillrl.objectives.divergences import forward_kl_per_token, reverse_kl_per_token

KD_LOSSES = ("forward_kl", "reverse_kl", "nll")
GAUSSIAN_LOSSES = ("forward_kl", "reverse_kl", "nll", "mse")
DISTRIBUTION_LOSSES = ("forward_kl", "reverse_kl", "nll")  # need the teacher's distribution, not just its action
MIN_TEACHER_STD = 0.05  # reverse_kl: the teacher's std is clamped from below (a near-deterministic SAC has 1e-9)
SQUASHED_TARGET_CLAMP = 3.0  # a regressed pre-squash mean is clamped to +-3 (tanh(3) = 0.995): saturation


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


def gaussian_kl(mean_p: Tensor, log_std_p: Tensor, mean_q: Tensor, log_std_q: Tensor) -> Tensor:
    """KL(N(m_p, s_p^2) || N(m_q, s_q^2)) of diagonal Gaussians, summed over the last (action) dimension:

        KL = sum_j [ log s_q - log s_p + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2 ]

    For tanh-squashed policies (a = tanh(u), u Gaussian) this *is* the KL of the squashed action distributions,
    exactly: tanh is a bijection, and the log|det J| terms of the two densities cancel inside the log-ratio. For
    a Gaussian clipped to the box it is an upper bound on the KL of the clipped actions (data processing)."""
    variance_ratio = torch.exp(2.0 * (log_std_p - log_std_q))
    mahalanobis = (mean_p - mean_q).pow(2) * torch.exp(-2.0 * log_std_q)
    return (log_std_q - log_std_p + 0.5 * (variance_ratio + mahalanobis) - 0.5).sum(-1)


def split_gaussian(outputs: Tensor) -> tuple[Tensor, Tensor]:
    """A Box head's outputs [n, 2 d] as (mean [n, d], log std [n, d])."""
    return outputs.chunk(2, dim=-1)


def gaussian_kd_loss(student: Tensor, teacher: Tensor, loss: str, temperature: float = 1.0,
                     squashed: bool = True) -> Tensor:  # fmt: skip
    """Mean over states of the distillation loss between diagonal Gaussians (outputs [mean | log std], over the
    pre-squash variable u when `squashed`, else over the unclipped box action); the teacher's std is s_T tau:

    forward_kl: KL(N_T || N_S) (gaussian_kl); reverse_kl: KL(N_S || N_T) with s_T clamped to >= MIN_TEACHER_STD;
    mse: |tanh(m_S) - tanh(m_T)|^2 (squashed) or |m_S - clip(m_T, -1, 1)|^2 (the deterministic actions);
    nll: -log N(u_T; m_S, s_S) of one teacher sample u_T ~ N_T per state (the sample-based forward KL; for
    squashed policies the NLL of tanh(u_T) up to log|det J|, which does not depend on the student).
    """
    mean_s, log_std_s = split_gaussian(student)
    mean_t, log_std_t = split_gaussian(teacher)
    log_std_t = log_std_t + math.log(temperature)
    if loss == "forward_kl":
        return gaussian_kl(mean_t, log_std_t, mean_s, log_std_s).mean()
    if loss == "reverse_kl":
        return gaussian_kl(mean_s, log_std_s, mean_t, log_std_t.clamp(min=math.log(MIN_TEACHER_STD))).mean()
    if loss == "mse":
        if squashed:
            return (torch.tanh(mean_s) - torch.tanh(mean_t)).pow(2).sum(-1).mean()
        return (mean_s - mean_t.clamp(-1.0, 1.0)).pow(2).sum(-1).mean()
    if loss == "nll":
        sample = mean_t + torch.exp(log_std_t) * torch.randn_like(mean_t)
        return -torch.distributions.Normal(mean_s, torch.exp(log_std_s)).log_prob(sample).sum(-1).mean()
    raise ValueError(f"loss: unknown policy distillation loss {loss!r} (choose from {', '.join(GAUSSIAN_LOSSES)})")


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
