"""Long traces: micro-batches under a token budget, activation checkpointing, generation under a KV budget."""

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM
from user_models import tiny_decoder

from distillrl.models.loading import resolve_model_path
from distillrl.run.trainer import train
from distillrl.text.micro_batches import pack_under_budget, real_spans, trim_padding
from distillrl.text.sequences import encode_pairs


def padded_rows(spans: list[tuple[int, int]], width: int) -> torch.Tensor:
    """An attention mask [B, width] whose row r is real on the columns [start_r, end_r)."""
    columns = torch.arange(width)
    return torch.stack([(columns >= start) & (columns < end) for start, end in spans]).long()


@st.composite
def rollouts(draw):
    width = draw(st.integers(2, 40))
    prompt_width = draw(st.integers(1, width - 1))
    prompts = draw(st.integers(1, 8))
    group = draw(st.integers(1, 4))
    spans = [(draw(st.integers(0, prompt_width - 1)), draw(st.integers(prompt_width + 1, width)))
             for _ in range(prompts * group)]  # fmt: skip
    units = list(torch.arange(prompts * group).reshape(prompts, group))
    return padded_rows(spans, width), units, draw(st.integers(1, 200))


@settings(max_examples=200, deadline=None)
@given(rollouts())
def test_token_budget_micro_batches_partition_the_prompts_within_the_budget(rollout):
    mask, units, budget = rollout
    batches = pack_under_budget(units, mask, budget)
    rows = torch.cat(batches)
    assert sorted(rows.tolist()) == list(range(len(mask)))  # every row once
    unit_of = {r: i for i, unit in enumerate(units) for r in unit.tolist()}
    start, end = real_spans(mask)
    for batch in batches:
        assert batch.tolist() == sorted(batch.tolist())
        whole = {unit_of[r] for r in batch.tolist()}
        assert sum(len(units[u]) for u in whole) == len(batch)  # whole prompts only
        cost = len(batch) * int(end[batch].max() - start[batch].min())
        assert cost <= budget or len(whole) == 1  # a prompt over the budget goes alone


def test_packing_is_longest_first_and_trimming_keeps_the_tokens():
    mask = padded_rows([(3, 6), (0, 10), (2, 8)], 10)
    assert [b.tolist() for b in pack_under_budget(list(torch.arange(3)[:, None]), mask, 20)] == [[1, 2], [0]]
    assert [b.tolist() for b in pack_under_budget(list(torch.arange(3)[:, None]), mask, 9)] == [[1], [2], [0]]

    _, tokenizer = tiny_decoder("llama")
    sequences = encode_pairs(tokenizer, ["1=", "22+3=", "4="], ["1", "25 and some more", "4;#4"]).select(torch.tensor([0, 2]))
    trimmed = trim_padding(sequences)
    start, end = real_spans(sequences.attention_mask)
    assert trimmed.input_ids.shape[1] == int(end.max() - start.min()) < sequences.input_ids.shape[1]
    assert torch.equal(trimmed.target_ids, sequences.target_ids)
    assert torch.equal(trimmed.attention_mask.sum(-1), sequences.attention_mask.sum(-1))


def final_weights(run_dir: str) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(Path(run_dir) / "final").state_dict()


@pytest.mark.parametrize("fidelity", ["sampled", "full"])
def test_token_budget_runs_take_the_steps_of_one_micro_batch_per_minibatch(tiny_config, tmp_path, fidelity):
    """3 steps with a 160-token budget (about two prompts a micro-batch, their padding trimmed) and the same 3 steps in one micro-batch
    per minibatch: the same gradient sum, so the same weights (and the same sequences): all within 1e-5, and all
    but a few coordinates (of near-zero gradient) within 1e-6."""
    runs = {}
    for name, optim in {"one": {}, "budget": {"micro_batch_tokens": 160, "score_batch_tokens": 100}}.items():
        config = tiny_config(output_dir=str(tmp_path / name), objective={"name": "reverse_kl", "fidelity": fidelity},
                             optim={"steps": 3, "lr": 5e-4, "minibatches": 2, **optim}, eval={"every": 0, "num_prompts": 4},
                             checkpoint={"every": 0})  # fmt: skip
        train(config, show_progress=False)
        runs[name] = final_weights(config.output_dir)
    initial = AutoModelForCausalLM.from_pretrained(resolve_model_path("zoo:student-base")).state_dict()
    assert any(not torch.equal(initial[key], value) for key, value in runs["one"].items())  # the steps moved it
    gaps = torch.cat([(runs["budget"][key] - value).abs().flatten() for key, value in runs["one"].items()])
    assert gaps.max() < 1e-5
    assert (gaps < 1e-6).float().mean() > 0.999  # AdamW's g / (sqrt(v) + eps) magnifies rounding where g ~ eps


def gradients(model, sequences, monkeypatch) -> tuple[list[torch.Tensor], int]:
    """The gradient of sum_t log pi(y_t) through completion_logits, and how many MLP forward passes it took
    (the recompute of a checkpointed layer runs inside the autograd engine, past module hooks)."""
    from transformers.models.llama.modeling_llama import LlamaMLP

    from distillrl.scoring.forward import completion_logits

    calls, forward = [], LlamaMLP.forward
    monkeypatch.setattr(LlamaMLP, "forward", lambda self, x: calls.append(1) or forward(self, x))
    model.train()
    model.zero_grad()
    logits = completion_logits(model, sequences.input_ids, sequences.attention_mask, sequences.completion_mask)
    logits.token_logprobs(sequences.target_ids).sum().backward()
    monkeypatch.undo()
    return [p.grad.clone() for p in model.parameters() if p.requires_grad], len(calls)


@pytest.mark.parametrize("lora", [False, True])
def test_activation_checkpointing_recomputes_the_layers_and_keeps_the_gradients(lora, monkeypatch):
    """With checkpointing each layer runs forward twice (again in the backward pass, through completion_logits'
    direct call of the decoder); the gradients equal the
    plain run's to 1e-6, for all weights and for a LoRA adapter."""
    from distillrl.config import LoraSettings
    from distillrl.models.student import enable_activation_checkpointing

    model, tokenizer = tiny_decoder("llama", layers=3)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=LoraSettings().target_modules,
                                                 init_lora_weights=False))  # fmt: skip
    sequences = encode_pairs(tokenizer, ["3+4=", "12*3-7="], ["3+4=7;#7", "29;#29 with more"])
    plain, plain_calls = gradients(model, sequences, monkeypatch)
    enable_activation_checkpointing(model)
    checkpointed, calls = gradients(model, sequences, monkeypatch)
    assert (plain_calls, calls) == (3, 6)  # 3 layers, each recomputed once
    assert len(plain) == len(checkpointed) > 0
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0)
