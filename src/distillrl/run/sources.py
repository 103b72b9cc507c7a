"""Sequence sources: where a step's token sequences come from (the first choice of the loop)."""

from __future__ import annotations

import random

from distillrl.rollout.sampling import Truncation
from distillrl.rollout.speculative import speculative_generate
from distillrl.run.roles import Models
from distillrl.run.runtime import autocast
from distillrl.run.signals import route_to_teachers
from distillrl.tasks import Problem
from distillrl.text.sequences import Sequences, encode_pairs


def rollout_truncation(rollout) -> Truncation:
    """The sampling truncation of a RolloutConfig (top_k, top_p, min_p)."""
    return Truncation(rollout.top_k, rollout.top_p, rollout.min_p)


def dataset_sequences(models: Models, problems: list[Problem]) -> Sequences:
    """The problems' given solutions as sequences (SFT data, GKD's off-policy half)."""
    missing = next((p.prompt for p in problems if p.solution is None), None)
    if missing is not None:
        raise ValueError(f"rollout.source: the dataset has no solution for prompt {missing!r}")
    return encode_pairs(models.tokenizer, [p.prompt for p in problems], [p.solution for p in problems],
                        models.chat).to(models.device)  # fmt: skip


def teacher_sequences(models: Models, problems: list[Problem], rollout) -> Sequences:
    """G samples per prompt, each from the teacher its prompt is routed to (by `domain` with several teachers);
    rows stay grouped by prompt in the problems' order."""
    routes = route_to_teachers(problems, [t.name for t in models.teachers])
    parts = []
    for index, teacher in enumerate(models.teachers):
        rows = (routes == index).nonzero().squeeze(-1)
        if len(rows) == 0:
            continue
        part = models.engine(teacher.model).generate([problems[i].prompt for i in rows.tolist()], rollout.group_size,
                                                     rollout.temperature, rollout.max_new_tokens,
                                                     rollout_truncation(rollout)).to(models.device)  # fmt: skip
        part.prompt_index = rows.to(models.device)[part.prompt_index]
        parts.append(part)
    sequences = Sequences.cat(parts, models.tokenizer.pad_token_id)
    return sequences.select(sequences.prompt_index.argsort(stable=True))


def sample_sequences(config, models: Models, problems: list[Problem], rng: random.Random) -> tuple[Sequences, dict]:
    """The step's sequences from `rollout.source`, and metrics about them (on-policy share, SKD acceptance).

    student: G samples of pi_theta per prompt; teacher: G samples of the prompt's teacher (seq-KD); dataset:
    the solutions;
    mixed (GKD): with probability lmbda student samples, else teacher samples (seq_kd) or the dataset;
    speculative (SKD): student proposals kept inside the teacher's top-K, teacher samples elsewhere.
    """
    rollout = config.rollout
    prompts = [p.prompt for p in problems]
    source = rollout.source
    metrics = {}
    if source == "mixed":
        on_policy = rng.random() < rollout.lmbda
        source = "student" if on_policy else ("teacher" if rollout.seq_kd else "dataset")
        metrics["on_policy"] = float(on_policy)
    if source == "dataset":
        return dataset_sequences(models, problems), metrics
    with autocast(models.precision, models.device):
        if source == "speculative":
            sequences, acceptance = speculative_generate(
                models.student, models.teacher, models.tokenizer, prompts, rollout.group_size, rollout.temperature,
                rollout.max_new_tokens, rollout.speculative_top_k, rollout_truncation(rollout), models.chat,
            )  # fmt: skip
            return sequences, metrics | {"speculative_acceptance": acceptance}
        if source == "teacher":
            return teacher_sequences(models, problems, rollout), metrics
        sequences = models.engine(models.student).generate(prompts, rollout.group_size, rollout.temperature,
                                                           rollout.max_new_tokens, rollout_truncation(rollout))  # fmt: skip
    return sequences, metrics
