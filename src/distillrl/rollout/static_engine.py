"""The static engine: sampling with a static KV cache and, on GPUs, a compiled decode step whose graph is reused.

Prompts are left-padded to a length bucket (a power of two, at least 16) and the batch to a multiple of 8, so a
run meets only a handful of shapes; each shape keeps its StaticCache, and the compiled decode step (CUDA graphs
on a GPU) is replayed across steps instead of recompiled. Each decode step runs one token for every row; rows
that have ended hold the pad token, and decoding stops once every row has ended (checked every `check_every`
tokens: one host sync each). Stop strings are applied to the finished rows (the rows decode on past them).

The policy that samples is a copy of the model in the compute dtype (bf16 under bf16 precision: no weight casts
inside the decode graph) whose weights are refreshed from the trained model at the start of every call; in
fp32 it is the model itself.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase, StaticCache

from distillrl.models.compat import base_model, cache_keyword
from distillrl.models.vocabulary import padding_ids
from distillrl.rollout.sampling import NO_TRUNCATION, RowSeeds, Truncation, rows_per_batch, sample_from_logits
from distillrl.text.chat import PLAIN, ChatFormat, Prompt, stop_token_ids
from distillrl.text.sequences import Sequences, encode_prompts, join_prompts_and_completions, prompt_batches

MIN_PROMPT_BUCKET = 16
BATCH_MULTIPLE = 8
CACHES_KEPT = 4  # StaticCaches kept per engine, newest first (each shape's cache is reused across steps)


def prompt_bucket(length: int) -> int:
    """The padded prompt width: the smallest power of two >= length, at least MIN_PROMPT_BUCKET."""
    bucket = MIN_PROMPT_BUCKET
    while bucket < length:
        bucket *= 2
    return bucket


def batch_bucket(rows: int, most: int | None = None) -> int:
    """The padded batch: rows rounded up to a multiple of BATCH_MULTIPLE, and to at most `most` rows (a KV
    budget's batch, which then stays within the budget)."""
    padded = -(-rows // BATCH_MULTIPLE) * BATCH_MULTIPLE
    return padded if most is None else min(padded, most)


def additive_mask(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """0 where attention is allowed, the dtype's minimum elsewhere (finite: a fully masked row stays finite)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, torch.finfo(dtype).min)


class StaticCacheEngine:
    """prompts -> Sequences with a static KV cache; `compile` compiles the decode step (reduce-overhead)."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dtype: torch.dtype,
                 compile: bool, batch_size: int = 512, check_every: int | None = None,
                 chat: ChatFormat = PLAIN, max_kv_tokens: int | None = None):  # fmt: skip
        self.model = model
        self.tokenizer = tokenizer
        self.dtype = dtype
        self.batch_size = batch_size
        self.chat = chat
        self.max_kv_tokens = max_kv_tokens
        self.device = next(model.parameters()).device
        self.check_every = check_every or (8 if self.device.type == "cuda" else 1)
        self.stop_ids = stop_token_ids(tokenizer, base_model(model))
        self.vocab_size = len(tokenizer) if padding_ids(tokenizer, model) else None  # a padded head: its tokens only
        if next(model.parameters()).dtype == dtype:
            self.runner = model
        else:
            self.runner = copy.deepcopy(model).to(dtype)
            self.runner.requires_grad_(False)
        self.cache_keyword = cache_keyword(model)
        self.caches: dict[tuple[int, int], StaticCache] = {}
        self.decode = self._last_logits
        if compile:
            import torch._dynamo

            torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
            self.decode = torch.compile(self._last_logits, mode="reduce-overhead", dynamic=False)
        self.compiled = compile

    @torch.no_grad()
    def sync(self) -> None:
        """Copy the trained model's weights into the sampling copy (nothing to do when they are the same)."""
        if self.runner is not self.model:
            torch._foreach_copy_(list(self.runner.parameters()), list(self.model.parameters()))

    def _last_logits(self, input_ids: Tensor, position_ids: Tensor, attention_mask: Tensor, cache: StaticCache) -> Tensor:
        """Logits of the last position over the tokenizer's ids, float32 [B, V]; writes the inputs' keys and values
        into `cache`."""
        output = self.runner(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                             use_cache=True, logits_to_keep=1, **{self.cache_keyword: cache})  # fmt: skip
        return output.logits[:, -1, : self.vocab_size].float()

    def _cache(self, rows: int, length: int) -> StaticCache:
        key = (rows, length)
        cache = self.caches.pop(key, None)
        if cache is None:
            cache = StaticCache(config=base_model(self.runner).config, max_cache_len=length)
        else:
            cache.reset()
        self.caches = {key: cache, **dict(list(self.caches.items())[: CACHES_KEPT - 1])}
        return cache

    @torch.no_grad()
    def generate(self, prompts: list[Prompt], num_samples: int = 1, temperature: float = 1.0,
                 max_new_tokens: int = 64, truncation: Truncation = NO_TRUNCATION) -> Sequences:  # fmt: skip
        """`num_samples` completions per prompt (row i answers prompt i // num_samples); temperature 0 is greedy.

        Under max_kv_tokens a batch has at most floor(max_kv_tokens / (bucket(P) + max_new_tokens)) rows (P: the
        widest prompt), its cache as many (batch_bucket's `most`), and each row samples from its own generator
        (RowSeeds), so that the batches do not change its tokens.
        """
        self.sync()
        was_training = self.runner.training
        self.runner.eval()
        repeated = [p for p in prompts for _ in range(num_samples)]
        prompt_index = torch.arange(len(prompts), device=self.device).repeat_interleave(num_samples)
        all_ids, all_mask = encode_prompts(self.tokenizer, repeated, self.chat)
        rows_each = rows_per_batch(self.batch_size, self.max_kv_tokens, prompt_bucket(all_ids.shape[1]) + max_new_tokens)
        budgeted = self.max_kv_tokens is not None
        seeds = RowSeeds(self.device) if budgeted and temperature > 0 else None
        parts = []
        for rows, prompt_ids, prompt_mask in prompt_batches(all_ids, all_mask, rows_each):
            prompt_ids, prompt_mask = prompt_ids.to(self.device), prompt_mask.to(self.device)
            padded_rows = batch_bucket(prompt_ids.shape[0], rows_each if budgeted else None)
            generators = seeds.generators(range(rows.start, rows.start + padded_rows)) if seeds else None
            completion_ids = self._decode_batch(prompt_ids, prompt_mask, temperature, max_new_tokens, truncation,
                                                padded_rows, generators)  # fmt: skip
            parts.append(join_prompts_and_completions(self.tokenizer, prompt_ids, prompt_mask, completion_ids,
                                                      prompt_index[rows], self.stop_ids, self.chat.stop_strings))  # fmt: skip
        self.runner.train(was_training)
        return Sequences.cat(parts, self.tokenizer.pad_token_id)

    def _decode_batch(self, prompt_ids: Tensor, prompt_mask: Tensor, temperature: float, max_new_tokens: int,
                      truncation: Truncation, padded_rows: int,
                      generators: list[torch.Generator] | None) -> Tensor:  # fmt: skip
        """Completions [n, L] of left-padded prompts [n, P] (padded here to `padded_rows` and the prompt bucket,
        then cut back to n rows); row b samples from generators[b] when given."""
        rows, width = prompt_ids.shape
        padded_width = prompt_bucket(width)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((padded_rows, padded_width), pad, dtype=prompt_ids.dtype, device=self.device)
        ids[:rows, padded_width - width :] = prompt_ids
        length = padded_width + max_new_tokens
        visible = torch.zeros(padded_rows, length, dtype=torch.bool, device=self.device)  # keys each row may attend
        visible[:rows, padded_width - width : padded_width] = prompt_mask.bool()
        positions = (visible[:, :padded_width].long().cumsum(-1) - 1).clamp(min=0)
        next_position = visible[:, :padded_width].sum(-1)  # the first completion token's position id

        cache = self._cache(padded_rows, length)
        causal = torch.ones(padded_width, length, dtype=torch.bool, device=self.device).tril()
        prefill_mask = additive_mask(causal[None] & visible[:, None, :], self.dtype)[:, None]  # [B, 1, P, L]
        logits = self._last_logits(ids, positions, prefill_mask, cache)  # eager: sets up the cache's tensors

        stop_ids = torch.tensor(self.stop_ids, device=self.device)
        finished = torch.arange(padded_rows, device=self.device) >= rows  # padding rows never generate
        tokens = torch.full((padded_rows, max_new_tokens), pad, dtype=prompt_ids.dtype, device=self.device)
        steps = max_new_tokens
        for step in range(max_new_tokens):
            token = torch.where(finished, pad, sample_from_logits(logits, temperature, truncation, generators))
            tokens[:, step] = token
            finished |= torch.isin(token, stop_ids)
            if step + 1 == max_new_tokens or ((step + 1) % self.check_every == 0 and bool(finished.all())):
                steps = step + 1
                break
            visible[:, padded_width + step] = True
            step_mask = additive_mask(visible, self.dtype)[:, None, None, :]  # [B, 1, 1, L]
            if self.compiled:
                torch.compiler.cudagraph_mark_step_begin()
            logits = self.decode(token[:, None], (next_position + step)[:, None], step_mask, cache)
        return tokens[:rows, :steps]
