"""Divergences between teacher and student distributions at every visited position (off- or on-policy).

Each per-token function takes log-probabilities [n, V] of a chunk (or [n, k + 1] top-k buckets) and returns
[n]; the objectives run them through `ChunkedLogits.map`, so they work on any number of positions without
an N x V tensor.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from distillrl.objectives.batch import Batch
from distillrl.scoring.logits import ChunkedLogits
from distillrl.scoring.topk import gather_with_tail


def kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) = sum_v p(v) [log p(v) - log q(v)] per row: [n]."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def log_mixture(log_p: Tensor, log_q: Tensor, weight_p: float) -> Tensor:
    """log(w p + (1 - w) q), computed stably in log space (0 < w < 1)."""
    return torch.logaddexp(log_p + math.log(weight_p), log_q + math.log1p(-weight_p))


def reverse_kl_per_token(student_lp: Tensor, teacher_lp: Tensor) -> Tensor:
    """KL(pi_theta || pi_T) = sum_v pi_theta(v) [log pi_theta(v) - log pi_T(v)] (OPD, mode-seeking)."""
    return kl(student_lp, teacher_lp)


def forward_kl_per_token(student_lp: Tensor, teacher_lp: Tensor) -> Tensor:
    """KL(pi_T || pi_theta) = sum_v pi_T(v) [log pi_T(v) - log pi_theta(v)]."""
    return kl(teacher_lp, student_lp)


def jsd_per_token(student_lp: Tensor, teacher_lp: Tensor, beta: float) -> Tensor:
    """Generalised JSD (GKD): M = beta pi_T + (1 - beta) pi_theta,
    JSD_beta = beta KL(pi_T || M) + (1 - beta) KL(pi_theta || M).

    The mixture form vanishes at the ends, so they are special-cased as TRL does: beta = 0 is the forward
    KL(pi_T || pi_theta), beta = 1 the reverse KL(pi_theta || pi_T).
    """
    if beta == 0.0:
        return kl(teacher_lp, student_lp)
    if beta == 1.0:
        return kl(student_lp, teacher_lp)
    mixture = log_mixture(teacher_lp, student_lp, beta)
    return beta * kl(teacher_lp, mixture) + (1.0 - beta) * kl(student_lp, mixture)


def skew_kl_per_token(student_lp: Tensor, teacher_lp: Tensor, alpha: float, reverse: bool = False) -> Tensor:
    """DistiLLM skew KL: KL(pi_T || alpha pi_T + (1 - alpha) pi_theta); with `reverse`, the skew reverse KL
    KL(pi_theta || (1 - alpha) pi_T + alpha pi_theta)."""
    if reverse:
        return kl(student_lp, log_mixture(student_lp, teacher_lp, alpha))
    return kl(teacher_lp, log_mixture(teacher_lp, student_lp, alpha))


class Divergence:
    """Minimise a divergence D(pi_T, pi_theta) of the teacher's and student's next-token distributions,
    averaged over completion tokens, at fidelity `full` (whole vocabulary) or `topk` (the teacher's top-k
    tokens plus a tail bucket, the student gathered at the same ids plus its own tail).

    `forward_kl` (Hinton KD) applies the temperature tau to both logits and scales the loss by tau^2;
    `jsd` (GKD) uses beta; `skew_kl` (DistiLLM) uses alpha and `skew_reverse`; `reverse_kl` is OPD's exact KL.
    """

    def __init__(self, name: str, fidelity: str = "full", temperature: float = 1.0, beta: float = 0.5,
                 alpha: float = 0.1, skew_reverse: bool = False):  # fmt: skip
        self.name, self.fidelity, self.temperature = name, fidelity, temperature
        self.needs = frozenset({"teacher_logits" if fidelity == "full" else "teacher_topk"})
        self.per_token = {
            "reverse_kl": reverse_kl_per_token,
            "forward_kl": forward_kl_per_token,
            "jsd": lambda s, t: jsd_per_token(s, t, beta),
            "skew_kl": lambda s, t: skew_kl_per_token(s, t, alpha, skew_reverse),
        }[name]

    def per_position(self, batch: Batch) -> Tensor:
        """D at every completion position: [N]."""
        student = batch.policy_logits
        if self.fidelity == "topk":
            topk = lambda s, ids, t: self.per_token(gather_with_tail(s, ids), t)  # noqa: E731
            return ChunkedLogits.map(topk, [student], [batch.teacher_topk_ids, batch.teacher_topk_logprobs],
                                     chunk_size=batch.chunk_size)  # fmt: skip
        teacher = batch.teacher_logits
        if self.temperature != 1.0:
            student = replace(student, temperature=self.temperature)
            teacher = replace(teacher, temperature=self.temperature)
        return ChunkedLogits.map(self.per_token, [student, teacher], chunk_size=batch.chunk_size)

    def __call__(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        per_token = self.per_position(batch)
        loss = self.temperature**2 * per_token.sum() / batch.num_tokens
        return loss, {"loss": loss.item(), self.name: per_token.sum().item() / batch.num_tokens}
