"""Which tokens a sampler may draw: the shared vocabulary, then `top_k`, `top_p` and `min_p` truncation.

Truncation follows transformers' logits processors, in their order (after the temperature): top-k keeps the k
most probable tokens, top-p the smallest set of most probable tokens whose mass reaches p, min-p the tokens
whose probability is at least min_p times the most probable one's (of the distribution left by the first two).
A truncated sampler no longer samples pi_theta itself: the importance ratios of grpo/gopd/rlad then weigh
samples of the truncated policy by pi_theta/pi_old, as TRL and verl do.

Under a KV budget (rollout.max_kv_tokens) the engines generate in several batches, and each row samples from its
own generator (RowSeeds), so a row's tokens do not depend on which batch it lands in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Truncation:
    """rollout.top_k (0: off), rollout.top_p (1: off), rollout.min_p (0: off)."""

    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0

    @property
    def active(self) -> bool:
        return self.top_k > 0 or self.top_p < 1.0 or self.min_p > 0.0

    def generate_kwargs(self) -> dict:
        """The same truncation as transformers' GenerationConfig fields."""
        return {"top_k": self.top_k, "top_p": self.top_p, "min_p": self.min_p or None}


NO_TRUNCATION = Truncation()


def truncate_logits(logits: Tensor, truncation: Truncation) -> Tensor:
    """[B, V] logits with the tokens that `truncation` removes set to -inf (at least one token is always kept)."""
    if not truncation.active:
        return logits
    logits = logits.float()
    if truncation.top_k > 0 and truncation.top_k < logits.shape[-1]:
        kth = logits.topk(truncation.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if truncation.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        mass_before = probs.cumsum(-1) - probs  # probability of the strictly more probable tokens
        remove = mass_before >= truncation.top_p  # the first token (mass before it 0) always stays
        logits = logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    if truncation.min_p > 0.0:
        probs = logits.softmax(-1)
        logits = logits.masked_fill(probs < truncation.min_p * probs.max(-1, keepdim=True).values, float("-inf"))
    return logits


def sample_from_logits(logits: Tensor, temperature: float, truncation: Truncation = NO_TRUNCATION,
                       generators: list[torch.Generator] | None = None) -> Tensor:  # fmt: skip
    """One token per row from softmax(truncate(logits / T)) (argmax at T = 0), without a host sync: [B, V] -> [B].

    Uses argmax_v p_v / E_v with E_v ~ Exp(1) i.i.d., which picks v with probability p_v (the exponential race;
    torch.multinomial would sync on a GPU). With `generators` (one per row), row b's E is drawn from generators[b],
    else all rows share the global torch RNG.
    """
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(truncate_logits(logits.float() / temperature, truncation), dim=-1)
    if generators is None:
        noise = torch.empty_like(probs).exponential_(1)
    else:
        noise = torch.stack([torch.empty_like(row).exponential_(1, generator=g) for row, g in zip(probs, generators)])
    return (probs / noise).argmax(-1)


class RowSeeds:
    """One random stream per row of a generate call: one draw of the global torch RNG gives a base seed, and row r
    (of the call's rows) samples from a generator seeded base + r. The rows' tokens are then the same however the
    rows are split into batches."""

    def __init__(self, device: torch.device):
        self.base = int(torch.randint(2**62, ()).item())
        self.device = device

    def generators(self, rows: range) -> list[torch.Generator]:
        return [torch.Generator(self.device).manual_seed(self.base + r) for r in rows]


def rows_per_batch(batch_size: int, max_kv_tokens: int | None, row_tokens: int) -> int:
    """Rows generated together: `batch_size`, and under a KV budget at most floor(max_kv_tokens / row_tokens)
    (at least 1), where row_tokens = prompt width + max_new_tokens is one row's KV cache length."""
    if max_kv_tokens is None:
        return batch_size
    return max(1, min(batch_size, max_kv_tokens // row_tokens))
