"""Scoring a rollout: every per-token and per-sequence signal the objective needs, in one frozen pass per model.

Rows are routed to teachers by their prompt's `domain` (one teacher: every row); a teacher is scored by its
backend (scoring/teachers.py: a local model, a server or a stored cache). Each local model scores its rows in
micro-batches of at most `rows_per_pass` sequences; the results are scattered back into the rollout's flat
token order, so the returned Batch covers the whole rollout (without `policy_logits`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from distillrl.objectives.batch import Batch
from distillrl.run.roles import FrozenScorer, Models
from distillrl.scoring.logits import ChunkedLogits
from distillrl.scoring.teachers import LocalTeacher
from distillrl.tasks import Problem
from distillrl.text.sequences import Sequences


class RoutingError(ValueError):
    """A prompt whose domain names no teacher."""


def route_to_teachers(problems: list[Problem], teacher_names: list[str]) -> Tensor:
    """Index of each problem's teacher: the one named by its `domain`; with a single teacher, always 0."""
    if len(teacher_names) <= 1:
        return torch.zeros(len(problems), dtype=torch.long)
    index = {name: i for i, name in enumerate(teacher_names)}
    missing = next((p for p in problems if p.domain not in index), None)
    if missing is not None:
        raise RoutingError(
            f"teachers: prompt {missing.prompt!r} has domain {missing.domain!r}, which names no teacher "
            f"(teachers: {', '.join(teacher_names)})"
        )
    return torch.tensor([index[p.domain] for p in problems], dtype=torch.long)


def score_rollout(
    models: Models,
    needs: frozenset[str],
    sequences: Sequences,
    problems: list[Problem],
    reward_fn,
    top_k: int = 20,
    rows_per_pass: int = 64,
    chunk_size: int = 1024,
    tokens_per_pass: int | None = None,
) -> Batch:
    """The Batch of a whole rollout: target ids, the signals in `needs`, rewards and routing; with `tokens_per_pass`
    each local model's passes are rows packed under that token budget instead of `rows_per_pass` rows."""
    target_ids = sequences.target_ids
    num_tokens = len(target_ids)
    device = target_ids.device
    teacher_of_prompt = route_to_teachers(problems, [t.name for t in models.teachers]).to(device)
    teacher_index = teacher_of_prompt[sequences.prompt_index]
    batch = Batch(target_ids=target_ids, sequence_index=sequences.sequence_index, num_tokens=num_tokens,
                  group_index=sequences.prompt_index, teacher_index=teacher_index, chunk_size=chunk_size)  # fmt: skip
    all_rows = torch.arange(len(sequences), device=device)

    def token_logprobs(scorer: FrozenScorer, rows: Tensor, into: Tensor) -> None:
        for mask, scored in LocalTeacher(scorer).score(sequences, rows, None, False, rows_per_pass, chunk_size,
                                                           tokens_per_pass):  # fmt: skip
            into[mask] = scored.token_logprobs

    teacher_signals = needs & {"teacher_logprobs", "teacher_topk", "teacher_logits"}
    bridged = bool(teacher_signals) and any(teacher.bridge is not None for teacher in models.teachers)
    if "old_logprobs" in needs or bridged:  # a teacher with its own tokenizer shares chunk gaps by pi_old
        batch.old_logprobs = target_ids.new_zeros(num_tokens, dtype=torch.float32)
        token_logprobs(models.scorer(models.student), all_rows, batch.old_logprobs)
    if teacher_signals:
        batch.teacher_logprobs = target_ids.new_zeros(num_tokens, dtype=torch.float32)
        if "teacher_topk" in needs:
            batch.teacher_topk_ids = target_ids.new_zeros(num_tokens, top_k)
            batch.teacher_topk_logprobs = target_ids.new_zeros(num_tokens, top_k + 1, dtype=torch.float32)
        hidden_parts = []
        top_k_asked = top_k if "teacher_topk" in needs else None
        for index, teacher in enumerate(models.teachers):
            rows = all_rows[teacher_index == index]
            scored_sequences = teacher.sequences(sequences, problems)  # after its own prompt (teacher.prompt)
            scorer = teacher.scorer if teacher.bridge is None else teacher.bridge.scorer(
                teacher.scorer, [p.prompt for p in problems], batch.old_logprobs)
            for mask, scored in scorer.score(scored_sequences, rows, top_k_asked, "teacher_logits" in needs,
                                             rows_per_pass, chunk_size, tokens_per_pass):  # fmt: skip
                batch.teacher_logprobs[mask] = scored.token_logprobs
                if top_k_asked is not None:
                    batch.teacher_topk_ids[mask], batch.teacher_topk_logprobs[mask] = scored.topk_ids, scored.topk_logprobs
                if scored.logits is not None:  # one teacher (checked in the config)
                    hidden_parts.append((mask, scored.logits))
        if hidden_parts:
            first = hidden_parts[0][1]
            hidden = first.hidden.new_empty(num_tokens, first.hidden.shape[-1])
            for mask, part in hidden_parts:  # the parts' tokens scattered back into the rollout's order
                hidden[mask] = part.hidden
            batch.teacher_logits = ChunkedLogits(hidden, first.weight, first.bias, first.temperature)
    if "reference_logprobs" in needs:
        batch.reference_logprobs = target_ids.new_zeros(num_tokens, dtype=torch.float32)
        references = [t.reference for t in models.teachers] or [models.reference]  # no teacher: index 0 for all
        for index, reference in enumerate(references):
            token_logprobs(reference, all_rows[teacher_index == index], batch.reference_logprobs)
    if "rewards" in needs or all(p.answer is not None for p in problems):
        rewards = [reward_fn(problems[i], text) for i, text in zip(sequences.prompt_index.tolist(), sequences.completions)]
        batch.rewards = torch.tensor(rewards, device=target_ids.device)
    return batch
