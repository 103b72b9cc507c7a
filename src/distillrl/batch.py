"""The Batch: the contract between scoring and objectives. Everything downstream of rollout reads it.

Per-token tensors are flat over the completion tokens of the micro-batch, in row-major order ([N]);
`sequence_index` says which row each token belongs to. `num_tokens` is the number of completion tokens in
the whole optimizer step (all gradient-accumulation micro-batches), so a loss written as
sum_over_tokens / num_tokens and summed over micro-batches is the mean over the step's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from distillrl.scoring.logits import ChunkedLogits


@dataclass
class Batch:
    target_ids: Tensor  # [N] completion tokens y_t
    sequence_index: Tensor  # [N] row of each token
    policy_logits: ChunkedLogits  # pi_theta at each completion position, carries gradient
    num_tokens: float  # completion tokens in the whole optimizer step (the loss normaliser)
    old_logprobs: Tensor | None = None  # [N] log pi_old(y_t), recorded at rollout
    teacher_logprobs: Tensor | None = None  # [N] log pi_T(y_t)
    teacher_logits: ChunkedLogits | None = None  # pi_T over the vocabulary (fidelity `full`)
    chunk_size: int = 1024  # positions per chunk for vocabulary-wide computations

    def policy_logprobs(self) -> Tensor:
        """log pi_theta(y_t | c_t) with gradient: [N]."""
        return self.policy_logits.token_logprobs(self.target_ids, self.chunk_size)
