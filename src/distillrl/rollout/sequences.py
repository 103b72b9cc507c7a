"""Finished token sequences: left-padded prompt, completion, right padding. Every source produces these."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase


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


def prompt_text(tokenizer: PreTrainedTokenizerBase, prompt: str) -> str:
    """The text the model continues: the chat template's generation prompt when the tokenizer has one."""
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    return prompt


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, model=None) -> list[int]:
    """Every id that ends a completion: the tokenizer's EOS and each EOS id of the model's generation config
    (instruct models list several, e.g. <|im_end|> and <|endoftext|>)."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    ids.discard(None)
    return sorted(ids)


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
) -> Sequences:
    """Assemble Sequences from left-padded prompts [B, P] and completions [B, L] (anything after the first stop
    token ignored; `stop_ids` defaults to the tokenizer's EOS)."""
    completion_mask = mask_after_eos(completion_ids, stop_ids or [tokenizer.eos_token_id])
    completion_ids = torch.where(completion_mask.bool(), completion_ids, tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
    return Sequences(
        input_ids=torch.cat([prompt_ids, completion_ids], dim=1),
        attention_mask=torch.cat([prompt_mask, completion_mask], dim=1),
        completion_mask=torch.cat([torch.zeros_like(prompt_mask), completion_mask], dim=1),
        prompt_index=prompt_index.to(prompt_ids.device),
        completions=texts,
        prompt_width=prompt_ids.shape[1],
    )


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str]) -> tuple[Tensor, Tensor]:
    """Tokenise prompts (through the chat template) with left padding: ids and mask [B, P]."""
    texts = [prompt_text(tokenizer, p) for p in prompts]
    encoded = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    return encoded["input_ids"], encoded["attention_mask"]


def encode_pairs(tokenizer: PreTrainedTokenizerBase, prompts: list[str], completions: list[str]) -> Sequences:
    """Sequences for given (prompt, completion) pairs, each completion closed by EOS (dataset / teacher traces)."""
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts)
    encoded = tokenizer(
        [c + tokenizer.eos_token for c in completions],
        return_tensors="pt",
        padding=True,
        padding_side="right",
        add_special_tokens=False,
    )
    return join_prompts_and_completions(
        tokenizer, prompt_ids, prompt_mask, encoded["input_ids"], torch.arange(len(prompts))
    )
