"""Rollout engines: prompts -> Sequences, one interface over transformers' `generate` and the static engine.

`hf` is eager `generate` (dynamic KV cache). `static` (rollout/static_engine.py) pads prompts to length
buckets and reuses a static KV cache and, on GPUs, one compiled decode graph per shape. `auto` picks by
device, as measured by `distillrl bench speed`: static on a GPU, hf on the CPU (where the tiny models' steps
are dominated by Python overhead that neither engine removes, and compiling is not worth its start-up cost).
Every engine returns the same Sequences with the same rendering, stop and mask rules (text/chat.py).
"""

from __future__ import annotations

from typing import Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distillrl.rollout.hf_generate import generate as hf_generate
from distillrl.rollout.sampling import NO_TRUNCATION, Truncation
from distillrl.rollout.static_engine import StaticCacheEngine
from distillrl.text.chat import PLAIN, ChatFormat, Prompt
from distillrl.text.sequences import Sequences


class RolloutEngine(Protocol):
    def generate(self, prompts: list[Prompt], num_samples: int = 1, temperature: float = 1.0, max_new_tokens: int = 64,
                 truncation: Truncation = NO_TRUNCATION) -> Sequences: ...  # fmt: skip


class HFEngine:
    """transformers' `generate` with its dynamic cache, in micro-batches of `batch_size` rows (fewer under a KV
    budget of `max_kv_tokens`: hf_generate.generate)."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 512,
                 chat: ChatFormat = PLAIN, max_kv_tokens: int | None = None):  # fmt: skip
        self.model, self.tokenizer, self.batch_size, self.chat = model, tokenizer, batch_size, chat
        self.max_kv_tokens = max_kv_tokens

    def generate(self, prompts: list[Prompt], num_samples: int = 1, temperature: float = 1.0, max_new_tokens: int = 64,
                 truncation: Truncation = NO_TRUNCATION) -> Sequences:  # fmt: skip
        return hf_generate(self.model, self.tokenizer, prompts, num_samples, temperature, max_new_tokens, self.batch_size,
                           truncation, self.chat, self.max_kv_tokens)  # fmt: skip


def resolve_engine(name: str, device: torch.device) -> str:
    """hf or static: `auto` is static on a GPU, hf on the CPU."""
    if name != "auto":
        return name
    return "static" if device.type == "cuda" else "hf"


def build_engine(name: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, precision: str,
                 batch_size: int = 512, chat: ChatFormat = PLAIN, max_kv_tokens: int | None = None
                 ) -> RolloutEngine:  # fmt: skip
    """The engine `name` (auto, hf or static) for `model`, sampling in the compute dtype of `precision`, prompts
    rendered and completions stopped as `chat` says, its KV cache within `max_kv_tokens` (rollout.max_kv_tokens)."""
    device = next(model.parameters()).device
    if resolve_engine(name, device) == "hf":
        return HFEngine(model, tokenizer, batch_size, chat, max_kv_tokens)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    return StaticCacheEngine(model, tokenizer, dtype, compile=device.type == "cuda", batch_size=batch_size, chat=chat,
                             max_kv_tokens=max_kv_tokens)  # fmt: skip
