"""Held-out evaluation: accuracy (verifier; greedy and sampled), reverse KL to the teacher, response length."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distillrl.models.vocabulary import shared_vocab_size
from distillrl.objectives.reverse_kl import full_reverse_kl
from distillrl.rollout.engines import HFEngine, RolloutEngine
from distillrl.run.runtime import autocast, fork_rng
from distillrl.scoring.forward import completion_logits
from distillrl.scoring.logits import ChunkedLogits
from distillrl.tasks.base import Problem, Task
from distillrl.text.sequences import Sequences

EVAL_SEED = 1234  # sampled evaluation uses its own RNG stream: comparable across steps, training RNG untouched


def accuracy(task: Task, problems: list[Problem], completions: list[str]) -> float:
    return sum(task.reward(p, c) for p, c in zip(problems, completions)) / len(problems)


def token_entropy(policy: ChunkedLogits) -> Tensor:
    """H_t = -sum_v pi(v | c_t) log pi(v | c_t) at each position: [N]."""
    return ChunkedLogits.map(lambda logprobs: -(logprobs.exp() * logprobs).sum(-1), [policy])


@torch.no_grad()
def completion_token_mean(per_token: Callable[..., Tensor], models: list[PreTrainedModel], sequences: Sequences,
                          batch_size: int = 256, vocab_size: int | None = None) -> float:  # fmt: skip
    """Mean over the completion tokens of `sequences` of per_token(logits of each model at those positions, over
    the ids below `vocab_size`), each model run on its own device and the logits brought to the first model's."""
    total, count = 0.0, 0
    devices = [next(model.parameters()).device for model in models]
    for start in range(0, len(sequences), batch_size):
        part = sequences.select(slice(start, start + batch_size))
        logits = []
        for model, device in zip(models, devices):
            part_here = part.to(device)
            logits.append(completion_logits(model, part_here.input_ids, part_here.attention_mask, part_here.completion_mask,
                                            vocab_size=vocab_size).to(devices[0]))  # fmt: skip
        values = per_token(*logits)
        total, count = total + values.sum().item(), count + values.numel()
    return total / max(count, 1)


@torch.no_grad()
def evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    problems: list[Problem],
    teacher: PreTrainedModel | None = None,
    temperature: float = 1.0,
    max_new_tokens: int = 48,
    batch_size: int = 256,
    precision: str = "fp32",
    engine: RolloutEngine | None = None,
) -> dict[str, float]:
    """eval/accuracy_greedy, eval/accuracy_sampled (at `temperature`), eval/response_length (sampled, tokens),
    eval/entropy (nats per token on the sampled completions), eval/accuracy_greedy/DOMAIN when the problems
    span several domains and, with a teacher, eval/reverse_kl (nats per token on the sampled completions)."""
    prompts = [p.prompt for p in problems]
    vocab_size = shared_vocab_size(tokenizer, [model] + ([teacher] if teacher is not None else []))  # no padding row
    engine = engine or HFEngine(model, tokenizer, batch_size)
    device = next(model.parameters()).device
    with autocast(precision, device):
        greedy = engine.generate(prompts, 1, 0.0, max_new_tokens)
        with fork_rng(device, EVAL_SEED):
            sampled = engine.generate(prompts, 1, temperature, max_new_tokens)
        metrics = {
            "eval/accuracy_greedy": accuracy(task, problems, greedy.completions),
            "eval/accuracy_sampled": accuracy(task, problems, sampled.completions),
            "eval/response_length": sampled.completion_lengths.float().mean().item(),
            "eval/entropy": completion_token_mean(token_entropy, [model], sampled, batch_size, vocab_size),
        }
        domains = sorted({p.domain for p in problems if p.domain is not None})
        if len(domains) > 1:  # several domains (multi-teacher): greedy accuracy on each
            for domain in domains:
                rows = [i for i, p in enumerate(problems) if p.domain == domain]
                metrics[f"eval/accuracy_greedy/{domain}"] = accuracy(
                    task, [problems[i] for i in rows], [greedy.completions[i] for i in rows]
                )
        if teacher is not None:
            metrics["eval/reverse_kl"] = completion_token_mean(full_reverse_kl, [model, teacher], sampled, batch_size,
                                                               vocab_size)  # fmt: skip
    return metrics
