"""Prompts that a model can take: every character in its vocabulary, prompt and completion within its context.

Checked when the prompts load, before any model weights do, so that a prompt longer than the context (or a
20 MB one) is named at once instead of being truncated, silently mapped to `<unk>` or exhausting memory.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from distillrl.errors import UserError
from distillrl.rollout.sequences import prompt_text


def check_prompts_fit(located_prompts: list[tuple[str, str]], tokenizer: PreTrainedTokenizerBase, model: str,
                      context: int | None, max_new_tokens: int) -> None:  # fmt: skip
    """Raise a UserError naming the first (where, prompt) whose tokens plus `max_new_tokens` exceed `context`
    (None: no limit) or that holds a character the tokenizer of `model` maps to its unknown token."""
    budget = None if context is None else context - max_new_tokens
    if budget is not None and budget < 1:
        raise UserError(f"max_new_tokens: {max_new_tokens} new tokens leave no room for a prompt in the "
                        f"{context}-token context of {model}")  # fmt: skip
    longest_token = max(len(token) for token in tokenizer.get_vocab())
    too_long = f"more than {model} can take ({context} tokens of context, {max_new_tokens} of them for the completion)"
    for where, prompt in located_prompts:
        if budget is not None and len(prompt) > budget * longest_token:  # too long for any tokenisation: not tokenised
            raise UserError(f"{where}: the prompt has {len(prompt):,} characters, {too_long}")
    texts = [prompt_text(tokenizer, prompt) for _, prompt in located_prompts]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    for (where, _), text, ids in zip(located_prompts, texts, encoded):
        if budget is not None and len(ids) > budget:
            raise UserError(f"{where}: the prompt is {len(ids)} tokens, {too_long}")
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
            offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            start, end = offsets[ids.index(tokenizer.unk_token_id)]
            if text[start:end] != tokenizer.unk_token:
                raise UserError(f"{where}: the prompt holds {text[start:end]!r}, which is not in the vocabulary of "
                                f"{model} (it would read as {tokenizer.unk_token})")  # fmt: skip
