"""Which tokens a sampler may draw: the shared vocabulary, then `top_k`, `top_p` and `min_p` truncation.

Truncation follows transformers' logits processors, in their order (after the temperature): top-k keeps the k
most probable tokens, top-p the smallest set of most probable tokens whose mass reaches p, min-p the tokens
whose probability is at least min_p times the most probable one's (of the distribution left by the first two).
A truncated sampler no longer samples pi_theta itself: the importance ratios of grpo/gopd/rlad then weigh
samples of the truncated policy by pi_theta/pi_old, as TRL and verl do.
"""

from __future__ import annotations

from dataclasses import dataclass

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
