"""Finished token sequences: left-padded prompt, completion, right padding. Every source produces these."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from distillrl.text.chat import (
    PLAIN,
    ChatFormat,
    Prompt,
    encode_texts,
    prompt_token_ids,
    reward_text,
    stop_token_ids,
    tokens_through_stop_string,
    training_pair,
)


@dataclass
class Sequences:
    input_ids: Tensor  # [B, T]
    attention_mask: Tensor  # [B, T] 1 on prompt and completion tokens
    completion_mask: Tensor  # [B, T] 1 on completion tokens (up to and including the first EOS)
    prompt_index: Tensor  # [B] which prompt of the step each row answers (G rows share one)
    completions: list[str]  # decoded completion text of each row, special tokens removed
    prompt_width: int  # columns [0, prompt_width) hold the left-padded prompts

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def target_ids(self) -> Tensor:
        """The completion tokens in row-major order: [N]."""
        return self.input_ids[:, 1:][self.completion_mask[:, 1:].bool()]

    @property
    def sequence_index(self) -> Tensor:
        """For each completion token, the row it belongs to: [N]."""
        rows = torch.arange(len(self), device=self.input_ids.device)[:, None].expand_as(self.input_ids)
        return rows[:, 1:][self.completion_mask[:, 1:].bool()]

    @property
    def completion_lengths(self) -> Tensor:
        return self.completion_mask.sum(-1)

    def select(self, rows: Tensor | slice) -> "Sequences":
        index = torch.arange(len(self), device=self.input_ids.device)[rows]
        return Sequences(
            input_ids=self.input_ids[index],
            attention_mask=self.attention_mask[index],
            completion_mask=self.completion_mask[index],
            prompt_index=self.prompt_index[index],
            completions=[self.completions[i] for i in index.tolist()],
            prompt_width=self.prompt_width,
        )

    def to(self, device: torch.device) -> "Sequences":
        """The same sequences with every tensor on `device`."""
        tensors = ("input_ids", "attention_mask", "completion_mask", "prompt_index")
        return replace(self, **{name: getattr(self, name).to(device) for name in tensors})

    def with_prompts(self, prompt_ids: list[list[int]], pad_token_id: int) -> "Sequences":
        """The same completions after other prompts: row i's prompt becomes `prompt_ids[prompt_index[i]]`,
        left-padded to max(prompt_width, the longest of them); the completion columns [prompt_width, T) are kept as
        they are, so the completion tokens (target_ids, sequence_index) are the same tokens in the same order."""
        ids, mask = left_pad(prompt_ids, pad_token_id)
        width = max(self.prompt_width, ids.shape[1])
        ids = torch.nn.functional.pad(ids, (width - ids.shape[1], 0), value=pad_token_id)
        mask = torch.nn.functional.pad(mask, (width - mask.shape[1], 0))
        rows, device, kept = self.prompt_index.cpu(), self.input_ids.device, slice(self.prompt_width, None)
        ids, mask = ids[rows].to(device), mask[rows].to(device)
        return replace(self, input_ids=torch.cat([ids, self.input_ids[:, kept]], dim=1),
                       attention_mask=torch.cat([mask, self.attention_mask[:, kept]], dim=1),
                       completion_mask=torch.cat([torch.zeros_like(mask), self.completion_mask[:, kept]], dim=1),
                       prompt_width=width)  # fmt: skip

    @staticmethod
    def cat(parts: list["Sequences"], pad_token_id: int) -> "Sequences":
        """Stack Sequences of different widths: prompts re-padded on the left, completions on the right."""
        prompt_width = max(p.prompt_width for p in parts)
        completion_width = max(p.input_ids.shape[1] - p.prompt_width for p in parts)

        def pad(part: "Sequences", tensor: Tensor, value: int) -> Tensor:
            left = prompt_width - part.prompt_width
            right = completion_width - (part.input_ids.shape[1] - part.prompt_width)
            return torch.nn.functional.pad(tensor, (left, right), value=value)

        return Sequences(
            input_ids=torch.cat([pad(p, p.input_ids, pad_token_id) for p in parts]),
            attention_mask=torch.cat([pad(p, p.attention_mask, 0) for p in parts]),
            completion_mask=torch.cat([pad(p, p.completion_mask, 0) for p in parts]),
            prompt_index=torch.cat([p.prompt_index for p in parts]),
            completions=[c for p in parts for c in p.completions],
            prompt_width=prompt_width,
        )


def mask_after_eos(completion_ids: Tensor, stop_ids: list[int] | Tensor) -> Tensor:
    """1 on each completion token up to and including its first stop token, 0 after it: [B, L]."""
    stop_ids = torch.as_tensor(stop_ids, device=completion_ids.device)
    is_eos = torch.isin(completion_ids, stop_ids).long()
    eos_before = is_eos.cumsum(-1) - is_eos
    return (eos_before == 0).long()


def join_prompts_and_completions(
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    prompt_index: Tensor,
    stop_ids: list[int] | None = None,
    stop_strings: tuple[str, ...] = (),
) -> Sequences:
    """Assemble Sequences from left-padded prompts [B, P] and completions [B, L]: anything after the first stop
    token (`stop_ids`, default the tokenizer's EOS) or after the token that completes the first of `stop_strings`
    is masked and replaced by padding; the completion text (what the reward reads) ends before the stop string."""
    completion_mask = mask_after_eos(completion_ids, stop_ids or [tokenizer.eos_token_id])
    if stop_strings:
        kept = [tokens_through_stop_string(tokenizer, row[: int(n)].tolist(), stop_strings)
                for row, n in zip(completion_ids, completion_mask.sum(-1))]  # fmt: skip
        positions = torch.arange(completion_ids.shape[1], device=completion_ids.device)
        completion_mask = (positions[None] < torch.tensor(kept, device=completion_ids.device)[:, None]).long()
    completion_ids = torch.where(completion_mask.bool(), completion_ids, tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
    if stop_strings:
        texts = [reward_text(text, stop_strings) for text in texts]
    return Sequences(
        input_ids=torch.cat([prompt_ids, completion_ids], dim=1),
        attention_mask=torch.cat([prompt_mask, completion_mask], dim=1),
        completion_mask=torch.cat([torch.zeros_like(prompt_mask), completion_mask], dim=1),
        prompt_index=prompt_index.to(prompt_ids.device),
        completions=texts,
        prompt_width=prompt_ids.shape[1],
    )


def left_pad(rows: list[list[int]], pad_token_id: int) -> tuple[Tensor, Tensor]:
    """Token id rows left-padded to the longest: ids and mask [B, P]."""
    width = max((len(row) for row in rows), default=0)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        if row:
            ids[index, width - len(row) :] = torch.tensor(row)
            mask[index, width - len(row) :] = 1
    return ids, mask


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[Prompt], chat: ChatFormat = PLAIN
                   ) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Tokenise prompts (rendered as text/chat.py says) with left padding: ids and mask [B, P]."""
    return left_pad(prompt_token_ids(tokenizer, prompts, chat), tokenizer.pad_token_id)


def prompt_batches(prompt_ids: Tensor, prompt_mask: Tensor, rows: int) -> Iterator[tuple[slice, Tensor, Tensor]]:
    """Left-padded prompts [B, P] in batches of `rows` rows: each batch's slice, ids and mask, cut to its own widest
    prompt (what encode_prompts gives for the batch alone)."""
    for start in range(0, prompt_ids.shape[0], rows):
        batch = slice(start, start + rows)
        mask = prompt_mask[batch]
        first = prompt_mask.shape[1] - int(mask.sum(-1).max())  # the columns before it are padding in every row
        yield batch, prompt_ids[batch, first:], mask[:, first:]


def encode_pairs(tokenizer: PreTrainedTokenizerBase, prompts: list[Prompt], completions: list[str],
                 chat: ChatFormat = PLAIN) -> Sequences:  # fmt: skip
    """Sequences for given (prompt, completion) pairs (dataset solutions, SFT targets), each completion closed by
    the chat template's end-of-turn token (training_pair; EOS without a template)."""
    pairs = [training_pair(tokenizer, p, c, chat) for p, c in zip(prompts, completions)]
    prompt_ids, prompt_mask = left_pad(encode_texts(tokenizer, [p for p, _ in pairs], chat), tokenizer.pad_token_id)
    encoded = tokenizer(
        [c for _, c in pairs],
        return_tensors="pt",
        padding=True,
        padding_side="right",
        add_special_tokens=False,
    )
    return join_prompts_and_completions(
        tokenizer, prompt_ids, prompt_mask, encoded["input_ids"], torch.arange(len(prompts)), stop_token_ids(tokenizer)
    )
