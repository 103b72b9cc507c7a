"""Small user-style models made inside the tests: random Llama and Qwen3 decoders over the zoo's tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen3Config

from distillrl.models.loading import load_tokenizer


def tiny_decoder(kind: str = "llama", hidden: int = 64, layers: int = 2, seed: int = 0, vocab_size: int | None = None):
    """A random decoder of the given family (llama or qwen3) sized for the zoo's character tokenizer."""
    tokenizer = load_tokenizer("zoo:student-base")
    common = dict(vocab_size=vocab_size or len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                  num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4,
                  max_position_embeddings=256, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)  # fmt: skip
    config = LlamaConfig(**common) if kind == "llama" else Qwen3Config(**common)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    return model, tokenizer


def save_decoder(path: Path, kind: str = "llama", **sizes) -> str:
    model, tokenizer = tiny_decoder(kind, **sizes)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
