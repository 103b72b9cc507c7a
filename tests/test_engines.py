"""Rollout engines: the static engine matches transformers' generate (greedy exactly, sampling in distribution)."""

import torch
from user_models import tiny_decoder

from distillrl.models.loading import load_causal_lm, load_tokenizer
from distillrl.rollout.engines import HFEngine, build_engine, resolve_engine
from distillrl.rollout.sampling import sample_from_logits
from distillrl.rollout.static_engine import StaticCacheEngine, batch_bucket, prompt_bucket

PROMPTS = [f"{a}+{b}*{c}=" for a in range(4) for b in range(3) for c in (2, 7)] + ["1=", "9-8+7-6+5-4+3-2="]


def test_buckets_repeat_shapes():
    assert [prompt_bucket(n) for n in (1, 16, 17, 33, 64, 65)] == [16, 16, 32, 64, 64, 128]
    assert [batch_bucket(n) for n in (1, 8, 9, 32, 200)] == [8, 8, 16, 32, 200]


def test_auto_engine_is_static_on_a_gpu_and_hf_on_the_cpu():
    assert resolve_engine("auto", torch.device("cuda", 0)) == "static"
    assert resolve_engine("auto", torch.device("cpu")) == "hf"
    assert resolve_engine("static", torch.device("cpu")) == "static"


def test_exponential_race_samples_the_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]]).expand(40000, -1)
    torch.manual_seed(0)
    counts = torch.bincount(sample_from_logits(logits, 1.0), minlength=5).float() / 40000
    assert (counts - torch.softmax(logits[0], -1)).abs().max() < 0.01
    hot = torch.bincount(sample_from_logits(logits, 0.5), minlength=5).float() / 40000
    assert (hot - torch.softmax(logits[0] / 0.5, -1)).abs().max() < 0.01
    assert torch.equal(sample_from_logits(logits[:2], 0.0), torch.tensor([0, 0]))


def test_static_greedy_equals_generate_on_the_zoo():
    tokenizer = load_tokenizer("zoo:teacher")
    teacher = load_causal_lm("zoo:teacher")
    hf = HFEngine(teacher, tokenizer).generate(PROMPTS, 1, 0.0, 40)
    static = StaticCacheEngine(teacher, tokenizer, torch.float32, compile=False, batch_size=10).generate(PROMPTS, 1, 0.0, 40)
    assert static.completions == hf.completions
    assert torch.equal(static.completion_lengths, hf.completion_lengths)
    assert any("#" in text for text in static.completions)


def test_static_sampling_matches_generate_in_distribution():
    """First two tokens of 3000 samples from each engine: both near the model's exact first-token softmax, and
    their joint two-token frequencies within a small total-variation distance of each other."""
    model, tokenizer = tiny_decoder("qwen3", hidden=32)
    prompt, samples = ["7*8="], 3000
    with torch.no_grad():
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        exact = torch.softmax(model(ids).logits[0, -1].float(), -1)

    def first_tokens(engine):
        torch.manual_seed(1)
        sequences = engine.generate(prompt, samples, 1.0, 2)
        width = sequences.prompt_width
        return sequences.input_ids[:, width], sequences.input_ids[:, width] * 1000 + sequences.input_ids[:, width + 1]

    vocab = exact.shape[0]
    hf_first, hf_pairs = first_tokens(HFEngine(model, tokenizer))
    static_first, static_pairs = first_tokens(StaticCacheEngine(model, tokenizer, torch.float32, compile=False))
    for first in (hf_first, static_first):
        assert (torch.bincount(first, minlength=vocab).float() / samples - exact).abs().sum() / 2 < 0.08
    pairs = torch.cat([hf_pairs, static_pairs]).unique()
    hf_freq = (hf_pairs[:, None] == pairs).float().mean(0)
    static_freq = (static_pairs[:, None] == pairs).float().mean(0)
    assert (hf_freq - static_freq).abs().sum() / 2 < 0.2  # the same 2-token law (two samples' noise ~0.1)


def test_static_engine_stops_at_every_eos_id_of_the_generation_config():
    tokenizer = load_tokenizer("zoo:teacher")
    teacher = load_causal_lm("zoo:teacher")
    hash_id = tokenizer.convert_tokens_to_ids("#")
    teacher.generation_config.eos_token_id = [tokenizer.eos_token_id, hash_id]
    for engine in (HFEngine(teacher, tokenizer), StaticCacheEngine(teacher, tokenizer, torch.float32, compile=False)):
        sequences = engine.generate(PROMPTS[:8], 1, 0.0, 40)
        ends = [row[mask.bool()][-1].item() for row, mask in zip(sequences.input_ids, sequences.completion_mask)]
        assert set(ends) == {hash_id}  # every completion ends at the '#' that the config lists as a stop
        assert all(text.endswith("#") and text.count("#") == 1 for text in sequences.completions)  # none after it


def test_bf16_sampling_copy_follows_the_trained_weights():
    model, tokenizer = tiny_decoder("llama")
    engine = build_engine("static", model, tokenizer, "bf16")
    assert engine.runner is not model and next(engine.runner.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01)
    engine.generate(["1+1="], 1, 0.0, 4)
    for copy, trained in zip(engine.runner.parameters(), model.parameters()):
        assert torch.equal(copy, trained.to(torch.bfloat16))
