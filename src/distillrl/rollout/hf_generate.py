"""Sampling completions with Hugging Face `generate` (KV cache, temperature, stop ids and stop strings)."""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from distillrl.models.compat import base_model
from distillrl.models.vocabulary import padding_ids
from distillrl.rollout.sampling import NO_TRUNCATION, RowSeeds, Truncation, rows_per_batch, sample_from_logits
from distillrl.text.chat import PLAIN, ChatFormat, Prompt, stop_token_ids
from distillrl.text.sequences import Sequences, encode_prompts, join_prompts_and_completions, prompt_batches


class RowSampler(LogitsProcessor):
    """Samples each row's next token with its own generator (sample_from_logits) and leaves only that token
    finite, so that greedy search takes it: generate's sampling without its one shared RNG stream."""

    def __init__(self, temperature: float, truncation: Truncation, generators: list[torch.Generator]):
        self.temperature, self.truncation, self.generators = temperature, truncation, generators

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        token = sample_from_logits(scores, self.temperature, self.truncation, self.generators)
        return torch.full_like(scores, float("-inf")).scatter_(-1, token[:, None], 0.0)


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    num_samples: int = 1,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    batch_size: int = 512,
    truncation: Truncation = NO_TRUNCATION,
    chat: ChatFormat = PLAIN,
    max_kv_tokens: int | None = None,
) -> Sequences:
    """`num_samples` completions per prompt (rows grouped by prompt: row i answers prompt i // num_samples).

    temperature 0 is greedy decoding; sampling (with `truncation`: top_k, top_p, min_p) stops at any of the
    model's stop ids (stop_token_ids) or stop strings (`chat`, which also renders the prompts) and never draws a
    padding row of the head (ids past the tokenizer's). Rows are generated `batch_size` at a time, and under
    `max_kv_tokens` at most floor(max_kv_tokens / (P + max_new_tokens)) at a time (P: the widest prompt), each row
    then sampling from its own generator (RowSeeds, RowSampler) so that the batches do not change its tokens.
    Uses the global torch RNG (once per call under a budget), which the trainer checkpoints.
    """
    repeated = [p for p in prompts for _ in range(num_samples)]
    prompt_index = torch.arange(len(prompts)).repeat_interleave(num_samples)
    was_training = model.training
    model.eval()
    stop_ids = stop_token_ids(tokenizer, base_model(model))
    per_row = max_kv_tokens is not None and temperature > 0
    sampled = temperature > 0 and not per_row  # generate's own sampling (RowSampler samples under a budget)
    config = GenerationConfig(
        do_sample=sampled,
        temperature=temperature if sampled else None,
        **(truncation.generate_kwargs() if sampled else {"top_k": None, "top_p": None}),
        suppress_tokens=padding_ids(tokenizer, model) or None,
        max_new_tokens=max_new_tokens,
        eos_token_id=stop_ids,
        stop_strings=list(chat.stop_strings) or None,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
        remove_invalid_values=True,  # a diverged model's nan/inf reach the loss, which stops the run with one line
    )
    all_ids, all_mask = encode_prompts(tokenizer, repeated, chat)
    seeds = RowSeeds(model.device) if per_row else None
    parts = []
    for rows, prompt_ids, prompt_mask in prompt_batches(
        all_ids, all_mask, rows_per_batch(batch_size, max_kv_tokens, all_ids.shape[1] + max_new_tokens)
    ):
        prompt_ids, prompt_mask = prompt_ids.to(model.device), prompt_mask.to(model.device)
        extra = {"tokenizer": tokenizer} if chat.stop_strings else {}  # generate matches stop strings with it
        if seeds is not None:
            generators = seeds.generators(range(rows.start, rows.start + prompt_ids.shape[0]))
            extra["logits_processor"] = LogitsProcessorList([RowSampler(temperature, truncation, generators)])
        output = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=config, **extra)
        completion_ids = output[:, prompt_ids.shape[1] :]
        parts.append(
            join_prompts_and_completions(
                tokenizer, prompt_ids, prompt_mask, completion_ids, prompt_index[rows], stop_ids, chat.stop_strings,
            )
        )
    model.train(was_training)
    return Sequences.cat(parts, tokenizer.pad_token_id)
