"""rollout.max_kv_tokens: generation in batches within a KV budget samples the sequences of one unbounded batch."""

import pytest
import torch
from user_models import tiny_decoder

from distillrl.config import TrainConfig
from distillrl.rollout.engines import HFEngine
from distillrl.rollout.sampling import NO_TRUNCATION, Truncation, rows_per_batch
from distillrl.rollout.static_engine import StaticCacheEngine, prompt_bucket

PROMPTS = ["1+1=", "12*7-3=", "9-8+7-6+5-4+3-2=", "5=", "3*3*3=", "40-2="]  # widths 2..16: each batch pads its own
GROUP, NEW = 2, 12
UNBOUNDED = 10**9  # one batch, each row sampling from its own generator: the reference


def completion_ids(sequences) -> list[list[int]]:
    return [row[mask.bool()].tolist() for row, mask in zip(sequences.input_ids, sequences.completion_mask)]


def run(engine, temperature: float, truncation: Truncation = NO_TRUNCATION) -> list[list[int]]:
    torch.manual_seed(5)
    return completion_ids(engine.generate(PROMPTS, GROUP, temperature, NEW, truncation))


def record_batches(model) -> list[tuple[int, int]]:
    """(rows, prompt width) of every generate call of `model` from now on."""
    shapes, generate = [], model.generate
    model.generate = lambda input_ids, **kwargs: shapes.append(tuple(input_ids.shape)) or generate(input_ids, **kwargs)
    return shapes


@pytest.mark.parametrize("rows", [1, 3, 5])
def test_hf_engine_under_a_budget_samples_the_unbounded_sequences(rows):
    model, tokenizer = tiny_decoder("llama")
    width = max(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in PROMPTS)
    budget = rows * (width + NEW) + width  # floor(budget / (width + NEW)) = rows
    for temperature, truncation in ((1.0, NO_TRUNCATION), (0.8, Truncation(top_k=5, top_p=0.9)), (0.0, NO_TRUNCATION)):
        reference = run(HFEngine(model, tokenizer, max_kv_tokens=UNBOUNDED), temperature, truncation)
        shapes = record_batches(model)
        bounded = run(HFEngine(model, tokenizer, max_kv_tokens=budget), temperature, truncation)
        del model.generate
        assert bounded == reference
        assert len(shapes) == -(-len(PROMPTS) * GROUP // rows) and all(n <= rows for n, _ in shapes)
        assert len({w for _, w in shapes}) > 1  # batches padded to different widths sample the same rows
    assert len({tuple(c) for c in reference}) > 3  # the rows differ: a real sampling test


def test_greedy_under_a_budget_is_the_default_greedy():
    model, tokenizer = tiny_decoder("llama")
    assert run(HFEngine(model, tokenizer, max_kv_tokens=30), 0.0) == run(HFEngine(model, tokenizer), 0.0)


@pytest.mark.parametrize("rows", [1, 5, 9])
def test_static_engine_under_a_budget_samples_the_unbounded_sequences_in_a_bounded_cache(rows):
    model, tokenizer = tiny_decoder("llama")
    row_tokens = prompt_bucket(16) + NEW
    budget = rows * row_tokens

    def static(max_kv_tokens):
        return StaticCacheEngine(model, tokenizer, torch.float32, compile=False, max_kv_tokens=max_kv_tokens)

    reference = run(static(UNBOUNDED), 1.0)
    engine = static(budget)
    assert run(engine, 1.0) == reference
    assert all(cache_rows * length <= budget for cache_rows, length in engine.caches)
    assert max(cache_rows for cache_rows, _ in engine.caches) == rows  # full batches fill the budget
    assert run(static(budget), 0.0) == run(static(None), 0.0)


def test_rows_per_batch():
    assert rows_per_batch(512, None, 100) == 512
    assert rows_per_batch(512, 1000, 100) == 10
    assert rows_per_batch(512, 99, 100) == 1  # a row longer than the budget still runs, alone
    assert rows_per_batch(4, 1000, 100) == 4


def test_max_kv_tokens_is_validated():
    assert TrainConfig.model_validate({}).rollout.max_kv_tokens is None
    assert TrainConfig.model_validate({"rollout": {"max_kv_tokens": 4096}}).rollout.max_kv_tokens == 4096
    with pytest.raises(ValueError, match="max_kv_tokens"):
        TrainConfig.model_validate({"rollout": {"max_kv_tokens": 0}})
    with pytest.raises(ValueError, match="rollout.max_kv_tokens"):
        TrainConfig.model_validate({"rollout": {"max_kv_tokens": 4096}, "distributed": {"strategy": "fsdp"}})
