"""Sampling completions with Hugging Face `generate` (KV cache, temperature, stop ids and stop strings)."""

from __future__ import annotations

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from distillrl.models.compat import base_model
from distillrl.models.vocabulary import padding_ids
from distillrl.rollout.sampling import NO_TRUNCATION, Truncation
from distillrl.text.chat import PLAIN, ChatFormat, Prompt, stop_token_ids
from distillrl.text.sequences import Sequences, encode_prompts, join_prompts_and_completions


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
) -> Sequences:
    """`num_samples` completions per prompt (rows grouped by prompt: row i answers prompt i // num_samples).

    temperature 0 is greedy decoding; sampling (with `truncation`: top_k, top_p, min_p) stops at any of the
    model's stop ids (stop_token_ids) or stop strings (`chat`, which also renders the prompts) and never draws a
    padding row of the head (ids past the tokenizer's). Uses the global torch RNG, which the trainer checkpoints.
    """
    repeated = [p for p in prompts for _ in range(num_samples)]
    prompt_index = torch.arange(len(prompts)).repeat_interleave(num_samples)
    was_training = model.training
    model.eval()
    stop_ids = stop_token_ids(tokenizer, base_model(model))
    config = GenerationConfig(
        do_sample=temperature > 0,
        temperature=temperature if temperature > 0 else None,
        **(truncation.generate_kwargs() if temperature > 0 else {"top_k": None, "top_p": None}),
        suppress_tokens=padding_ids(tokenizer, model) or None,
        max_new_tokens=max_new_tokens,
        eos_token_id=stop_ids,
        stop_strings=list(chat.stop_strings) or None,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
        remove_invalid_values=True,  # a diverged model's nan/inf reach the loss, which stops the run with one line
    )
    parts = []
    for start in range(0, len(repeated), batch_size):
        prompt_ids, prompt_mask = encode_prompts(tokenizer, repeated[start : start + batch_size], chat)
        prompt_ids, prompt_mask = prompt_ids.to(model.device), prompt_mask.to(model.device)
        with_tokenizer = {"tokenizer": tokenizer} if chat.stop_strings else {}  # generate matches stop strings with it
        output = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=config, **with_tokenizer)
        completion_ids = output[:, prompt_ids.shape[1] :]
        parts.append(
            join_prompts_and_completions(
                tokenizer, prompt_ids, prompt_mask, completion_ids, prompt_index[start : start + batch_size], stop_ids,
                chat.stop_strings,
            )
        )
    model.train(was_training)
    return Sequences.cat(parts, tokenizer.pad_token_id)
