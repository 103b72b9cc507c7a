"""The `topk` fidelity: a distribution reduced to k chosen tokens plus one tail bucket for the rest.

Teacher side: its top-k ids and log-probs, and the tail log(1 - sum_{v in K} p_T(v)). Student side: its
log-probs gathered at the teacher's ids, and its own tail. Divergences then run on these k + 1 buckets
exactly as on the full vocabulary; with k = V the tail is empty and the result equals the full divergence.
"""

from __future__ import annotations

import torch
from torch import Tensor

from distillrl.scoring.logits import ChunkedLogits

EMPTY_TAIL = -1.0e4  # log-prob given to an empty tail bucket: exp() is exactly 0 in float32, gradients stay finite


def gather_with_tail(log_probs: Tensor, ids: Tensor) -> Tensor:
    """[n, V], [n, k] -> [n, k + 1]: log p at `ids`, then the tail log(1 - sum_{v in ids} p(v)).

    The tail is computed as logsumexp over the tokens outside `ids` (the same number, without the cancellation
    of 1 - sum); when `ids` covers the vocabulary it is about EMPTY_TAIL, whose probability is exactly 0.
    """
    outside = log_probs.scatter(-1, ids, EMPTY_TAIL)
    tail = torch.logsumexp(outside, dim=-1, keepdim=True).clamp(max=0.0)
    return torch.cat([log_probs.gather(-1, ids), tail], dim=-1)


@torch.no_grad()
def topk_with_tail(logits: ChunkedLogits, k: int, chunk_size: int = 1024) -> tuple[Tensor, Tensor]:
    """The top-k ids [N, k] of each position and their log-probs with the tail bucket [N, k + 1]."""
    if k > logits.vocab_size:
        raise ValueError(f"objective.top_k: {k} is larger than the vocabulary ({logits.vocab_size} tokens)")
    ids, values = [], []
    for start in range(0, len(logits), chunk_size):
        log_probs = torch.log_softmax(logits.project(logits.hidden[start : start + chunk_size]), dim=-1)
        top = log_probs.topk(k, dim=-1).indices
        ids.append(top)
        values.append(gather_with_tail(log_probs, top))
    if not ids:
        return logits.hidden.new_zeros(0, k, dtype=torch.long), logits.hidden.new_zeros(0, k + 1, dtype=torch.float32)
    return torch.cat(ids), torch.cat(values)


def tail_from_topk(topk_logprobs: Tensor) -> Tensor:
    """[n, k] -> [n, 1]: the tail log(1 - sum_{v in K} p(v)) of log-probs known only at k tokens (a server's answer),
    computed in float64; an empty (or rounded-negative) tail is EMPTY_TAIL."""
    rest = 1.0 - topk_logprobs.double().exp().sum(-1, keepdim=True)
    return torch.where(rest > 0, rest.clamp(min=1e-300).log(), torch.full_like(rest, EMPTY_TAIL)).float()


def narrow_topk(ids: Tensor, logprobs: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The top-k of a top-K with tail (ids [n, K] sorted by falling log-prob, log-probs [n, K + 1]), k <= K: the first
    k ids, their log-probs and the tail logsumexp(tokens k..K-1, old tail)."""
    if k == ids.shape[1]:
        return ids, logprobs
    tail = torch.logsumexp(logprobs[:, k:], dim=-1, keepdim=True)
    return ids[:, :k], torch.cat([logprobs[:, :k], tail], dim=-1)
