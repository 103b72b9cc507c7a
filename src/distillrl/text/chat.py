"""Prompt rendering and stopping, in the one place every engine, scorer and check uses.

A prompt is a string (one user turn) or a list of chat messages (`{"role", "content"}`: system, user, assistant,
..., ending with a turn the model answers). With a chat template, it is rendered as transformers'
`apply_chat_template(..., add_generation_prompt=True, **template_kwargs)` does (`template_kwargs` such as Qwen3's
`enable_thinking`); a tokenizer without a template continues the bare string. BOS is what the tokenizer wants:
a tokenizer that puts BOS in front of what it encodes (Llama's) gets it in front of the rendered text, unless the
template wrote it already (as transformers and TRL do: a template that writes BOS never gets a second one).

A completion ends at the first stop id (stop_token_ids: the tokenizer's EOS, every EOS id of the model's
generation config and the chat template's end-of-turn token) or at the end of the first stop string; the tokens
after it are masked from training and the reward reads the text before it (reward_text: the stop string excluded).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Union

from jinja2 import TemplateError

from distillrl.core.errors import UserError

if TYPE_CHECKING:  # transformers is imported by the callers; the CLI's --help must not wait for it
    from transformers import PreTrainedTokenizerBase

Prompt = Union[str, list[dict]]  # one user turn, or chat messages
SENTINEL = "\u2063distillrl-sentinel\u2063"  # an assistant turn's content, to find what the template writes after it


@dataclass(frozen=True)
class ChatFormat:
    """How prompts become tokens and where completions end, beyond what the tokenizer itself says."""

    template_kwargs: dict = field(default_factory=dict)  # passed to the chat template (e.g. enable_thinking)
    stop_strings: tuple[str, ...] = ()  # a completion also ends at the end of the first of these
    max_prompt_tokens: int | None = None  # longer prompts lose their first tokens (BOS kept): task.truncate left
    truncate: Literal["error", "left"] = "error"  # error: prompts were checked to fit at start; never cut here


PLAIN = ChatFormat()


class TemplateMismatch(UserError):
    """A model that would read the prompts in another form than the student's template gives them."""


def as_messages(prompt: Prompt) -> list[dict]:
    """A string prompt as one user turn; messages as they are."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def prompt_chars(prompt: Prompt) -> int:
    """Characters of a prompt's text (every message's content)."""
    return len(prompt) if isinstance(prompt, str) else sum(len(m["content"]) for m in prompt)


def prompt_text(tokenizer: PreTrainedTokenizerBase, prompt: Prompt, chat: ChatFormat = PLAIN) -> str:
    """The text the model continues: the chat template's generation prompt when the tokenizer has a template,
    else the bare string (messages need a template)."""
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(as_messages(prompt), tokenize=False, add_generation_prompt=True,
                                             **chat.template_kwargs)  # fmt: skip
    if not isinstance(prompt, str):
        raise UserError("a chat `messages` prompt needs a chat template, and the student's tokenizer has none")
    return prompt


def bos_prefix(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """[BOS id] when the tokenizer puts BOS in front of what it encodes itself (Llama's), else []."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    with_specials = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    return [bos] if with_specials[:1] == [bos] and plain[:1] != [bos] else []


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: list[str], chat: ChatFormat = PLAIN) -> list[list[int]]:
    """Token ids of rendered prompt texts: BOS in front when the tokenizer wants one and the text lacks it; with
    `chat.max_prompt_tokens` (truncate left) a longer prompt keeps its last tokens (and its BOS)."""
    rows = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    bos = bos_prefix(tokenizer)
    rows = [bos + row if bos and row[:1] != bos else row for row in rows]
    limit = chat.max_prompt_tokens
    if limit is not None and chat.truncate == "left":
        keep = len(bos)
        rows = [row if len(row) <= limit else row[:keep] + row[len(row) - (limit - keep) :] for row in rows]
    return rows


def prompt_token_ids(tokenizer: PreTrainedTokenizerBase, prompts: list[Prompt], chat: ChatFormat = PLAIN) -> list[list[int]]:
    """Token ids of each prompt, rendered (prompt_text) and encoded (encode_texts)."""
    return encode_texts(tokenizer, [prompt_text(tokenizer, p, chat) for p in prompts], chat)


def training_pair(tokenizer: PreTrainedTokenizerBase, prompt: Prompt, completion: str,
                  chat: ChatFormat = PLAIN) -> tuple[str, str]:  # fmt: skip
    """(prompt text, completion text) to train on a given completion: the completion as the template renders an
    assistant turn, closed by the template's end-of-turn token (`<|im_end|>` for ChatML; TRL's prompt-completion
    split: the prompt is the common prefix of the prompt and the whole conversation), or completion + EOS
    without a template."""
    if not tokenizer.chat_template:
        return prompt_text(tokenizer, prompt, chat), completion + tokenizer.eos_token
    messages = as_messages(prompt)
    alone = prompt_text(tokenizer, prompt, chat)
    whole = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": completion}], tokenize=False,
                                          **chat.template_kwargs)  # fmt: skip
    common = os.path.commonprefix([alone, whole])
    return common, whole[len(common) :]


END_OF_TURN_PROBES = (  # a template may require a system turn first, or refuse one: each is tried in turn
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": SENTINEL}],
    [{"role": "system", "content": "hi"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": SENTINEL}],
)


def end_of_turn_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The special token the chat template writes right after an assistant turn (`<|im_end|>` for ChatML,
    `<|eot_id|>` for Llama 3), read from the first of END_OF_TURN_PROBES that the template renders; None without
    a template or when the template writes no special token there. A template that renders none of the probes
    (it raises on each) is a UserError: its completions would have no end-of-turn stop."""
    if not tokenizer.chat_template:
        return None
    errors = []
    for conversation in END_OF_TURN_PROBES:
        try:
            rendered = tokenizer.apply_chat_template(conversation, tokenize=False)
            break
        except TemplateError as error:
            errors.append(str(error))
    else:
        raise UserError(f"the chat template renders no assistant turn, so its end-of-turn token is unknown (a user "
                        f"turn: {errors[0]}; a system and a user turn: {errors[1]})")  # fmt: skip
    if SENTINEL not in rendered:
        return None
    after = tokenizer(rendered.split(SENTINEL)[-1], add_special_tokens=False)["input_ids"]
    added = tokenizer.added_tokens_decoder
    return after[0] if after and after[0] in added and added[after[0]].special else None


def check_end_of_turn(tokenizer: PreTrainedTokenizerBase, name: str) -> None:
    """end_of_turn_id's UserError, naming the model (`name`, e.g. `student.path PATH`), before any model loads."""
    try:
        end_of_turn_id(tokenizer)
    except UserError as error:
        raise UserError(f"{name}: {error}") from None


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, model=None) -> list[int]:
    """Every id that ends a completion: the tokenizer's EOS, each EOS id of the model's generation config
    (instruct models list several, e.g. <|im_end|> and <|endoftext|>) and the chat template's end-of-turn token."""
    ids = {tokenizer.eos_token_id, end_of_turn_id(tokenizer)}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    ids.discard(None)
    return sorted(ids)


def tokens_through_stop_string(tokenizer: PreTrainedTokenizerBase, ids: list[int], stop_strings: tuple[str, ...]) -> int:
    """The number of leading tokens of `ids` whose decoded text first holds a stop string (len(ids) when none
    does): the smallest k with a stop string in decode(ids[:k]), found by bisection."""
    def holds(k: int) -> bool:
        text = tokenizer.decode(ids[:k], skip_special_tokens=True)
        return any(stop in text for stop in stop_strings)

    if not stop_strings or not holds(len(ids)):
        return len(ids)
    low, high = 0, len(ids)  # holds(high), not holds(low)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if holds(middle) else (middle, high)
    return high


def reward_text(text: str, stop_strings: tuple[str, ...]) -> str:
    """What the reward reads of a completion's `text`: up to, not including, its first stop string (all of it when
    it holds none), so that a stop string `</answer>` or `\\n` is never part of the answer."""
    starts = [text.find(stop) for stop in stop_strings if stop in text]
    return text[: min(starts)] if starts else text


def check_teacher_template(student: PreTrainedTokenizerBase, teacher: PreTrainedTokenizerBase, chat: ChatFormat,
                           student_name: str, teacher_name: str, field_name: str) -> None:  # fmt: skip
    """Raise TemplateMismatch (naming `field_name`, e.g. `teacher.path`) when the teacher's own chat template
    renders a probe prompt, and a probe conversation, into other tokens than the student's: the teacher scores the student's rendering, so it
    would read prompts in a form it was not trained on (a student without a template and a teacher with one: the
    teacher would score raw prompts)."""
    probes: list[Prompt] = ["what is 2+3?"]
    if student.chat_template and teacher.chat_template:
        probes.append([{"role": "user", "content": "what is 2+3?"}, {"role": "assistant", "content": "5"},
                       {"role": "user", "content": "and 4+4?"}])  # fmt: skip
    hint = "; give both the same chat template"
    if field_name.endswith(".path"):
        hint += f", or set {field_name.removesuffix('.path')}.chat_template: student to let the teacher score the " \
                "student's rendering anyway"
    for probe in probes:
        try:
            mine, theirs = prompt_token_ids(student, [probe], chat)[0], prompt_token_ids(teacher, [probe], chat)[0]
        except TemplateError as error:
            raise TemplateMismatch(f"{field_name}: the chat template of {teacher_name} or {student_name} fails "
                                   f"on a probe conversation ({error}){hint}") from None
        if mine != theirs:
            if not student.chat_template:
                raise TemplateMismatch(f"{field_name}: the student {student_name} has no chat template, so prompts "
                                       f"are given raw, but the teacher {teacher_name} has one (it would score raw "
                                       f"prompts){hint}")  # fmt: skip
            shown = student.decode(mine), teacher.decode(theirs)
            raise TemplateMismatch(f"{field_name}: the chat template of {teacher_name} renders a probe prompt as "
                                   f"{shown[1]!r}, the student's ({student_name}) as {shown[0]!r}{hint}")
