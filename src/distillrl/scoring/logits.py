"""Per-position logits that never exist as one N x V tensor.

A model's logits at N positions are held as its final hidden states [N, H] and its output head [V, H];
`ChunkedLogits.map` runs a per-chunk function over position chunks and recomputes each chunk's logits in the
backward pass (activation checkpointing), so at most chunk_size x V logits are alive at once, forward or
backward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

CHUNK_LOGITS = 2**26  # logits per chunk by default: 256 MB in float32


def default_chunk_size(vocab_size: int) -> int:
    """Positions per chunk: CHUNK_LOGITS / V, between 16 and 1024 (1024 for small vocabularies; 441 for
    Qwen3's 151,936 tokens), so a chunk's [n, V] float32 buffers stay near 256 MB whatever the vocabulary."""
    return max(16, min(1024, CHUNK_LOGITS // vocab_size))


@dataclass
class ChunkedLogits:
    """Logits at N positions = (hidden @ weight.T + bias) / temperature, materialised chunk by chunk."""

    hidden: Tensor  # [N, H]
    weight: Tensor | None = None  # [V, H]; None means `hidden` already holds logits [N, V]
    bias: Tensor | None = None  # [V]
    temperature: float = 1.0

    @classmethod
    def from_logits(cls, logits: Tensor, temperature: float = 1.0) -> "ChunkedLogits":
        return cls(hidden=logits.reshape(-1, logits.shape[-1]), temperature=temperature)

    def __len__(self) -> int:
        return self.hidden.shape[0]

    def to(self, device: torch.device) -> "ChunkedLogits":
        """The same logits with hidden states and head on `device` (a teacher on another GPU)."""
        if self.hidden.device == device:
            return self
        move = lambda tensor: None if tensor is None else tensor.to(device)  # noqa: E731
        return ChunkedLogits(move(self.hidden), move(self.weight), move(self.bias), self.temperature)

    @property
    def vocab_size(self) -> int:
        return self.hidden.shape[-1] if self.weight is None else self.weight.shape[0]

    def project(self, hidden_chunk: Tensor) -> Tensor:
        """Logits of a chunk of hidden states, in float32: [n, H] -> [n, V]."""
        logits = hidden_chunk if self.weight is None else hidden_chunk @ self.weight.T
        if self.bias is not None:
            logits = logits + self.bias
        return logits.float() / self.temperature

    @staticmethod
    def map(
        fn: Callable[..., Tensor],
        logits: list["ChunkedLogits"],
        per_position: list[Tensor] = (),
        chunk_size: int = 1024,
    ) -> Tensor:
        """Apply `fn(log_probs_1, ..., log_probs_k, *per_position_chunks) -> [n]` over position chunks -> [N].

        Each `log_probs_i` is the log-softmax [n, V] of `logits[i]` on the chunk. Chunks are checkpointed when
        any input requires grad, so backward recomputes them instead of storing every chunk's [n, V].
        """
        total = len(logits[0])
        if any(len(item) != total for item in logits) or any(t.shape[0] != total for t in per_position):
            raise ValueError("ChunkedLogits.map: every input must cover the same positions")

        def chunk_fn(*hidden_chunks_and_extras: Tensor) -> Tensor:
            hidden_chunks = hidden_chunks_and_extras[: len(logits)]
            extras = hidden_chunks_and_extras[len(logits) :]
            log_probs = [torch.log_softmax(item.project(h), dim=-1) for item, h in zip(logits, hidden_chunks)]
            return fn(*log_probs, *extras)

        needs_grad = torch.is_grad_enabled() and any(
            item.hidden.requires_grad or (item.weight is not None and item.weight.requires_grad) for item in logits
        )
        outputs = []
        for start in range(0, total, chunk_size):
            end = min(start + chunk_size, total)
            args = [item.hidden[start:end] for item in logits] + [t[start:end] for t in per_position]
            if needs_grad:
                outputs.append(checkpoint(chunk_fn, *args, use_reentrant=False))
            else:
                outputs.append(chunk_fn(*args))
        if not outputs:
            return logits[0].hidden.new_zeros(0, dtype=torch.float32)
        return torch.cat(outputs)

    def token_logprobs(self, target_ids: Tensor, chunk_size: int = 1024) -> Tensor:
        """log pi(y_n | c_n) of the realised tokens: [N]."""
        return ChunkedLogits.map(
            lambda log_probs, ids: log_probs.gather(-1, ids[:, None]).squeeze(-1), [self], [target_ids], chunk_size
        )
