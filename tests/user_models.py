"""Small user-style models made inside the tests.

- `tiny_decoder` / `save_decoder`: random Llama and Qwen3 decoders over the zoo's character tokenizer.
- `bpe_tokenizer`: a byte-level BPE trained with `tokenizers` on a small text, with a ChatML template
  (`<|im_start|>`, `<|im_end|>`, `<|endoftext|>`), optionally adding BOS itself, optionally without a template.
- `user_model` / `save_user_model`: a tiny Qwen3 or Llama decoder over such a tokenizer whose generation config
  lists several EOS ids (`<|im_end|>` and `<|endoftext|>`, as Qwen and Llama instruct models do), optionally
  with padded embedding rows (vocab_size above the tokenizer's length).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig, PreTrainedTokenizerFast, Qwen3Config

from distillrl.models.loading import load_tokenizer


def tiny_decoder(kind: str = "llama", hidden: int = 64, layers: int = 2, seed: int = 0, vocab_size: int | None = None):
    """A random decoder of the given family (llama or qwen3) sized for the zoo's character tokenizer."""
    tokenizer = load_tokenizer("zoo:student-base")
    model = random_decoder(kind, vocab_size or len(tokenizer), hidden, layers, seed, 256,
                           eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    return model, tokenizer


def random_decoder(kind: str, vocab_size: int, hidden: int, layers: int, seed: int, max_positions: int, **token_ids):
    """A seeded random Llama or Qwen3 decoder (4 heads, 2 KV heads, untied head) with the given special token ids."""
    config_class = LlamaConfig if kind == "llama" else Qwen3Config
    config = config_class(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                          num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4,
                          max_position_embeddings=max_positions, tie_word_embeddings=False, **token_ids)  # fmt: skip
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


def save_model(path: Path, model, tokenizer) -> str:
    """`model` and `tokenizer` saved as a local checkpoint directory."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def save_decoder(path: Path, kind: str = "llama", **sizes) -> str:
    return save_model(path, *tiny_decoder(kind, **sizes))


CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = (
    "What is 12 plus 30? The answer is 42. What is the capital of France? Paris is the capital of France. "
    "Compute 7 times 6 and put the answer in a box: \\boxed{42}. Half of seven is 3.5. Simplify x+1. "
    "The quick brown fox jumps over the lazy dog. Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 2.0 2.00. "
    "Let us think step by step. First add the tens, then the ones, then check the result. #42\n"
)


def bpe_tokenizer(vocab_size: int = 320, corpus: str = CORPUS, bos: bool = False, chat_template: bool = True,
                  ) -> PreTrainedTokenizerFast:
    """A byte-level BPE (GPT-2/Qwen style) trained on `corpus` with the ChatML special tokens; `bos` adds a
    `<s>` token that the tokenizer prepends itself (Llama style); another `corpus` gives other merges."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = CHATML_SPECIALS + (["<s>"] if bos else [])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator([corpus] * 4, trainer=trainer)
    if bos:
        bos_id = backend.token_to_id("<s>")
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        bos_token="<s>" if bos else None, add_bos_token=bos, clean_up_tokenization_spaces=False,
        model_max_length=256,
    )
    if chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def user_model(kind: str = "qwen3", tokenizer: PreTrainedTokenizerFast | None = None, hidden: int = 64,
               layers: int = 2, seed: int = 0, padded_rows: int = 0, max_positions: int = 256):
    """A random tiny decoder over a user-style tokenizer (default `bpe_tokenizer()`), its generation config
    stopping at both `<|im_end|>` and `<|endoftext|>`; `padded_rows` extra embedding rows no token uses."""
    tokenizer = tokenizer or bpe_tokenizer()
    eos_ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    model = random_decoder(kind, len(tokenizer) + padded_rows, hidden, layers, seed, max_positions,
                           eos_token_id=eos_ids[0], pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.bos_token_id)  # fmt: skip
    model.generation_config = GenerationConfig(eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id,
                                               bos_token_id=tokenizer.bos_token_id)
    return model, tokenizer


def save_user_model(path: Path, kind: str = "qwen3", **options) -> str:
    """Save `user_model(kind, **options)` with its tokenizer as a local checkpoint directory."""
    return save_model(path, *user_model(kind, **options))
