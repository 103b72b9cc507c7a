"""What `distillrl bench speed` runs on: random-init student and teacher saved by path, their tokenizer and prompts.

Nothing is downloaded: each model is built from a config (`from_config`, random weights) and saved with
`save_pretrained` beside one shared tokenizer, so distillrl and TRL load the very same files by path.

Two tokenizers, both without special tokens added around a prompt (so a prompt of n units is exactly n ids):
- `char`: one token per character of a small alphabet, `<pad>` = id 0 and `<eos>` = the last id, which lies
  outside the models' vocabulary (`vocab_size` = len(tokenizer) - 1): a random model can then never end a
  completion early and every step decodes exactly `new_tokens` tokens in both tools, as in the `gpu` setting.
- `words`: a WordLevel vocabulary `t0 .. t{V-1}` with a whitespace pre-tokenizer; `t0` is `<eos>` and pad.
  At V = 151,936 a random model emits it with probability about 1/V per token, so completions run full length.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

CHAR_ALPHABET = string.ascii_lowercase + string.digits + " .,;:+-*/=()"
PAD, EOS = "<pad>", "<eos>"


@dataclass(frozen=True)
class ModelShape:
    """A decoder's size; heads default to hidden / 64 (query and key-value alike) and head_dim to 64."""

    hidden: int
    layers: int
    intermediate: int
    heads: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None

    def config_fields(self) -> dict:
        heads = self.heads or max(1, self.hidden // 64)
        return {
            "hidden_size": self.hidden,
            "num_hidden_layers": self.layers,
            "intermediate_size": self.intermediate,
            "num_attention_heads": heads,
            "num_key_value_heads": self.kv_heads or heads,
            "head_dim": self.head_dim or self.hidden // heads,
        }


@dataclass(frozen=True)
class BenchModels:
    student: str  # directory of the saved student
    teacher: str  # directory of the saved teacher
    prompts: str  # jsonl rows {"prompt", "answer"}; the answer (the prompt's first token, stated as the last line)
    # only lets distillrl's evaluation score something
    prompt_list: list[str]


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character of CHAR_ALPHABET; `<pad>` first, `<eos>` last (outside the models' vocabulary)."""
    vocab = {PAD: 0, **{char: index + 1 for index, char in enumerate(CHAR_ALPHABET)}}
    vocab[EOS] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=PAD))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, eos_token=EOS, padding_side="left",
                                   clean_up_tokenization_spaces=False)  # fmt: skip


def word_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """WordLevel tokens `t0 .. t{vocab_size-1}` split on whitespace; `t0` is both `<eos>` and the pad."""
    backend = Tokenizer(models.WordLevel(vocab={f"t{i}": i for i in range(vocab_size)}, unk_token="t0"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="t0", eos_token="t0", unk_token="t0",
                                   padding_side="left", clean_up_tokenization_spaces=False)  # fmt: skip


def random_prompts(tokenizer_kind: str, vocab_size: int, count: int, length: int, seed: int) -> list[str]:
    """`count` prompts of exactly `length` tokens each, drawn uniformly (never the pad or eos token)."""
    rng = random.Random(seed)
    if tokenizer_kind == "char":
        return ["".join(rng.choice(CHAR_ALPHABET) for _ in range(length)) for _ in range(count)]
    return [" ".join(f"t{rng.randrange(1, vocab_size)}" for _ in range(length)) for _ in range(count)]


def build_model(architecture: str, shape: ModelShape, vocab_size: int, tokenizer, dtype: torch.dtype,
                device: str, seed: int, extra: dict):  # fmt: skip
    """A random-init causal LM of `architecture` (a transformers model type) and `shape`; its config names the
    tokenizer's EOS only when that lies inside the vocabulary."""
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id < vocab_size else None
    config = AutoConfig.for_model(architecture, vocab_size=vocab_size, pad_token_id=tokenizer.pad_token_id,
                                  eos_token_id=eos, bos_token_id=None, **shape.config_fields(), **extra)  # fmt: skip
    torch.manual_seed(seed)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, dtype=dtype)


def save_bench_models(out: Path, *, architecture: str, student: ModelShape, teacher: ModelShape, tokenizer_kind: str,
                      vocab_size: int, dtype: torch.dtype, device: str, prompts: int, prompt_tokens: int,
                      extra_config: dict, seed: int = 0) -> BenchModels:  # fmt: skip
    """Build, save and describe the student, the teacher, their tokenizer and `prompts` prompts under `out`."""
    tokenizer = char_tokenizer() if tokenizer_kind == "char" else word_tokenizer(vocab_size)
    model_vocab = len(tokenizer) - 1 if tokenizer_kind == "char" else vocab_size
    paths = {}
    for offset, (role, shape) in enumerate((("student", student), ("teacher", teacher))):
        model = build_model(architecture, shape, model_vocab, tokenizer, dtype, device, seed + offset, extra_config)
        paths[role] = out / role
        model.save_pretrained(paths[role])
        tokenizer.save_pretrained(paths[role])
        del model
    prompt_list = random_prompts(tokenizer_kind, model_vocab, prompts, prompt_tokens, seed)
    prompt_file = out / "prompts.jsonl"
    first_token = (lambda p: p[0]) if tokenizer_kind == "char" else (lambda p: p.split()[0])
    prompt_file.write_text("".join(json.dumps({"prompt": p, "answer": first_token(p)}) + "\n" for p in prompt_list))
    return BenchModels(str(paths["student"]), str(paths["teacher"]), str(prompt_file), prompt_list)
