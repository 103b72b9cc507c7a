"""The Batch: the contract between scoring and objectives. Everything downstream of rollout reads it.

Per-token tensors are flat over the completion tokens of the batch, in row-major order ([N]);
`sequence_index` says which row each token belongs to. Per-sequence tensors are [B]. `num_tokens` is the
number of completion tokens in the whole optimizer step (all gradient-accumulation micro-batches), so a loss
written as sum_over_tokens / num_tokens and summed over micro-batches is the mean over the step's tokens.

The trainer scores a whole rollout once (every field but `policy_logits`), then `select`s the rows of each
micro-batch and adds the student's logits, which carry the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from distillrl.scoring.logits import ChunkedLogits

PER_TOKEN = ("target_ids", "old_logprobs", "teacher_logprobs", "teacher_topk_ids", "teacher_topk_logprobs",
             "reference_logprobs")  # fmt: skip
PER_SEQUENCE = ("rewards", "group_index", "teacher_index")


@dataclass
class Batch:
    target_ids: Tensor  # [N] completion tokens y_t
    sequence_index: Tensor  # [N] row of each token
    num_tokens: float  # completion tokens in the whole optimizer step (the loss normaliser)
    policy_logits: ChunkedLogits | None = None  # pi_theta at each completion position, carries gradient
    old_logprobs: Tensor | None = None  # [N] log pi_old(y_t), recorded at rollout
    teacher_logprobs: Tensor | None = None  # [N] log pi_T(y_t)
    teacher_topk_ids: Tensor | None = None  # [N, k] the teacher's top-k tokens (fidelity `topk`)
    teacher_topk_logprobs: Tensor | None = None  # [N, k + 1] their log-probs, then the tail bucket
    teacher_logits: ChunkedLogits | None = None  # pi_T over the vocabulary (fidelity `full`)
    reference_logprobs: Tensor | None = None  # [N] log pi_ref(y_t)
    rewards: Tensor | None = None  # [B] verifiable reward of each sequence
    group_index: Tensor | None = None  # [B] the prompt each row answers (rows of one prompt form a GRPO group)
    teacher_index: Tensor | None = None  # [B] which teacher scored each row (multi-teacher routing)
    chunk_size: int = 1024  # positions per chunk for vocabulary-wide computations

    def policy_logprobs(self) -> Tensor:
        """log pi_theta(y_t | c_t) with gradient: [N]."""
        return self.policy_logits.token_logprobs(self.target_ids, self.chunk_size)

    def select(self, rows: Tensor) -> "Batch":
        """The sub-batch of the given rows (ascending), rows renumbered from 0; per-token fields follow."""
        token_mask = torch.isin(self.sequence_index, rows)
        changes = {"sequence_index": torch.searchsorted(rows, self.sequence_index[token_mask])}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if field.name in PER_TOKEN:
                changes[field.name] = value[token_mask]
            elif field.name in PER_SEQUENCE:
                changes[field.name] = value[rows]
            elif isinstance(value, ChunkedLogits):
                changes[field.name] = replace(value, hidden=value.hidden[token_mask])
        return replace(self, **changes)
