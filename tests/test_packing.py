"""Padding-free scoring: one packed row per micro-batch gives the padded rectangle's logits."""

import pytest
import torch
from user_models import tiny_decoder

from distillrl.scoring.forward import completion_logits
from distillrl.text.sequences import encode_pairs

PROMPTS = ["3+4=", "12*3-7=", "1=", "9-8+7-6="]
COMPLETIONS = ["3+4=7;#7", "1", "1;#1 and more words here", "2;#2"]


@pytest.mark.parametrize("kind", ["llama", "qwen3"])
def test_packed_scoring_equals_padded_scoring(kind):
    model, tokenizer = tiny_decoder(kind)
    sequences = encode_pairs(tokenizer, PROMPTS, COMPLETIONS)
    assert (sequences.attention_mask == 0).any()  # left and right padding present
    args = (sequences.input_ids, sequences.attention_mask, sequences.completion_mask)
    with torch.no_grad():
        padded = completion_logits(model, *args, packed=False)
        packed = completion_logits(model, *args, packed=True)
        targets = sequences.target_ids
        assert len(packed) == len(padded) == len(targets) == int(sequences.completion_mask.sum())
        full_padded = torch.log_softmax(padded.project(padded.hidden), -1)
        full_packed = torch.log_softmax(packed.project(packed.hidden), -1)
    assert torch.allclose(full_packed, full_padded, atol=1e-5)
    assert torch.allclose(packed.token_logprobs(targets), padded.token_logprobs(targets), atol=1e-5)


def test_packed_scoring_carries_the_gradient():
    model, tokenizer = tiny_decoder("llama")
    model.train()
    sequences = encode_pairs(tokenizer, PROMPTS, COMPLETIONS)
    args = (sequences.input_ids, sequences.attention_mask, sequences.completion_mask)
    grads = []
    for packed in (False, True):
        model.zero_grad()
        completion_logits(model, *args, packed=packed).token_logprobs(sequences.target_ids).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5, rtol=1e-4)
