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


def rewards_of(task: Task, problems: list[Problem], completions: list[str]) -> list[float]:
    """The task's reward of each completion (the verifier: 1 when its answer is right)."""
    return [task.reward(p, c) for p, c in zip(problems, completions)]


def accuracy(task: Task, problems: list[Problem], completions: list[str]) -> float:
    return sum(rewards_of(task, problems, completions)) / len(problems)


def token_entropy(policy: ChunkedLogits) -> Tensor:
    """H_t = -sum_v pi(v | c_t) log pi(v | c_t) at each position: [N]."""
    return ChunkedLogits.map(lambda logprobs: -(logprobs.exp() * logprobs).sum(-1), [policy])


@torch.no_grad()
def completion_token_values(per_token: Callable[..., Tensor], models: list[PreTrainedModel], sequences: Sequences,
                            batch_size: int = 256, vocab_size: int | None = None) -> tuple[float, list[Tensor]]:  # fmt: skip
    """per_token(logits of each model at the completion positions of `sequences`, over the ids below `vocab_size`),
    each model run on its own device and the logits brought to the first model's: the mean over every completion
    token, and each row's values (CPU, one per completion token)."""
    total, count, rows = 0.0, 0, []
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
        rows += list(values.float().cpu().split(part.completion_mask.sum(-1).tolist()))
    return total / max(count, 1), rows


def completion_token_mean(per_token: Callable[..., Tensor], models: list[PreTrainedModel], sequences: Sequences,
                          batch_size: int = 256, vocab_size: int | None = None) -> float:  # fmt: skip
    """The mean of completion_token_values over every completion token."""
    return completion_token_values(per_token, models, sequences, batch_size, vocab_size)[0]


def sample_rows(tokenizer: PreTrainedTokenizerBase, problems: list[Problem], sequences: Sequences, decoding: str,
                rewards: list[float], max_new_tokens: int, token_kl: list[Tensor] | None = None) -> list[dict]:  # fmt: skip
    """One samples-file row per completion: prompt, completion, answer, reward, length (tokens), stopped (ended
    before max_new_tokens), each token decoded on its own and, with `token_kl`, the reverse KL to the teacher (mean
    and per token, nats)."""
    rows = []
    for index, (problem, completion, reward) in enumerate(zip(problems, sequences.completions, rewards)):
        ids = sequences.input_ids[index][sequences.completion_mask[index].bool()].tolist()
        kl = token_kl[index] if token_kl is not None else None
        rows.append({"decoding": decoding, "prompt": problem.prompt, "completion": completion, "answer": problem.answer,
                     "reward": float(reward), "length": len(ids), "stopped": len(ids) < max_new_tokens,
                     "reverse_kl": None if kl is None else kl.mean().item() if len(kl) else 0.0,
                     "tokens": [tokenizer.decode([i]) for i in ids],
                     "token_reverse_kl": None if kl is None else [round(v, 5) for v in kl.tolist()]})  # fmt: skip
    return rows


@torch.no_grad()
def evaluate_with_samples(
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
) -> tuple[dict[str, float], list[dict]]:
    """evaluate's metrics and its completions as samples-file rows (sample_rows): each problem's greedy and sampled
    completion, the sampled one with its per-token reverse KL when there is a teacher."""
    prompts = [p.prompt for p in problems]
    vocab_size = shared_vocab_size(tokenizer, [model] + ([teacher] if teacher is not None else []))  # no padding row
    engine = engine or HFEngine(model, tokenizer, batch_size)
    device = next(model.parameters()).device
    with autocast(precision, device):
        greedy = engine.generate(prompts, 1, 0.0, max_new_tokens)
        with fork_rng(device, EVAL_SEED):
            sampled = engine.generate(prompts, 1, temperature, max_new_tokens)
        greedy_rewards = rewards_of(task, problems, greedy.completions)
        sampled_rewards = rewards_of(task, problems, sampled.completions)
        metrics = {
            "eval/accuracy_greedy": sum(greedy_rewards) / len(problems),
            "eval/accuracy_sampled": sum(sampled_rewards) / len(problems),
            "eval/response_length": sampled.completion_lengths.float().mean().item(),
            "eval/entropy": completion_token_mean(token_entropy, [model], sampled, batch_size, vocab_size),
        }
        domains = sorted({p.domain for p in problems if p.domain is not None})
        if len(domains) > 1:  # several domains (multi-teacher): greedy accuracy on each
            for domain in domains:
                rows = [i for i, p in enumerate(problems) if p.domain == domain]
                metrics[f"eval/accuracy_greedy/{domain}"] = sum(greedy_rewards[i] for i in rows) / len(rows)
        token_kl = None
        if teacher is not None:
            metrics["eval/reverse_kl"], token_kl = completion_token_values(full_reverse_kl, [model, teacher], sampled,
                                                                           batch_size, vocab_size)  # fmt: skip
    samples = (sample_rows(tokenizer, problems, greedy, "greedy", greedy_rewards, max_new_tokens)
               + sample_rows(tokenizer, problems, sampled, "sampled", sampled_rewards, max_new_tokens, token_kl))  # fmt: skip
    return metrics, samples


def evaluate(*args, **kwargs) -> dict[str, float]:
    """eval/accuracy_greedy, eval/accuracy_sampled (at `temperature`), eval/response_length (sampled, tokens),
    eval/entropy (nats per token on the sampled completions), eval/accuracy_greedy/DOMAIN when the problems
    span several domains and, with a teacher, eval/reverse_kl (nats per token on the sampled completions).
    Arguments as evaluate_with_samples."""
    return evaluate_with_samples(*args, **kwargs)[0]
