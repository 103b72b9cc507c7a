"""Prompts that the models can take: every character in the vocabulary, prompt and completion within each context.

Checked when the prompts load, before any model weights do, so that a prompt longer than a context (or a 20 MB
one) is named at once instead of running on past the model's positions, being silently mapped to `<unk>` or
exhausting memory. With `task.truncate: left` a long prompt is cut to fit instead (text/chat.py).
"""

from __future__ import annotations

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase

from distillrl.core.errors import UserError, one_line
from distillrl.text.chat import PLAIN, ChatFormat, Prompt, encode_texts, prompt_chars, prompt_text


def max_positions(model_config) -> int | None:
    """The most positions a model takes (max_position_embeddings, n_positions for GPT-2), None when unbounded."""
    return getattr(model_config, "max_position_embeddings", None)


def check_prompts_fit(located_prompts: list[tuple[str, Prompt]], tokenizer: PreTrainedTokenizerBase, model: str,
                      context: int | None, max_new_tokens: int, chat: ChatFormat = PLAIN) -> None:  # fmt: skip
    """Raise a UserError naming the longest (where, prompt) whose tokens plus `max_new_tokens` exceed `context`
    (None: no limit; not raised when `chat.truncate` is left), the first that the chat template cannot render (a
    role it refuses) or the first that holds a character the tokenizer of `model` maps to its unknown token."""
    budget = None if context is None else context - max_new_tokens
    if budget is not None and budget < 1:
        raise UserError(f"max_new_tokens: {max_new_tokens} new tokens leave no room for a prompt in the "
                        f"{context}-token context of {model}")  # fmt: skip
    limited = budget is not None and chat.truncate == "error"
    longest_token = max(len(token) for token in tokenizer.get_vocab())
    too_long = f"more than {model} can take ({context} tokens of context, {max_new_tokens} of them for the completion)"
    hint = "; shorten it, lower max_new_tokens, or set task.truncate: left"
    for where, prompt in located_prompts:
        chars = prompt_chars(prompt)
        if limited and chars > budget * longest_token:  # too long for any tokenisation: not tokenised
            raise UserError(f"{where}: the prompt has {chars:,} characters, {too_long}{hint}")
    texts = []
    for where, prompt in located_prompts:
        try:
            texts.append(prompt_text(tokenizer, prompt, chat))
        except UserError as error:
            raise UserError(f"{where}: {error}") from None
        except TemplateError as error:  # e.g. a role or an order of turns the template refuses
            raise UserError(f"{where}: the chat template of {model} cannot render this prompt ({one_line(error)})") from None
    encoded = encode_texts(tokenizer, texts)
    lengths = [len(ids) for ids in encoded]
    if limited and lengths and max(lengths) > budget:
        longest = lengths.index(max(lengths))
        over = sum(length > budget for length in lengths)
        others = f" (the longest of {over} too long)" if over > 1 else ""
        raise UserError(f"{located_prompts[longest][0]}: the prompt is {lengths[longest]} tokens, {too_long}{others}"
                        f"{hint}")  # fmt: skip
    for (where, _), text, ids in zip(located_prompts, texts, encoded):
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
            offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            start, end = offsets[ids.index(tokenizer.unk_token_id) - (len(ids) - len(offsets))]
            if text[start:end] != tokenizer.unk_token:
                raise UserError(f"{where}: the prompt holds {text[start:end]!r}, which is not in the vocabulary of "
                                f"{model} (it would read as {tokenizer.unk_token})")  # fmt: skip
