"""Evaluating a model by name on held-out prompts, as `distillrl eval` does (and `distillrl.evaluate` in Python).

The checks run before any weights load: the task and its answers, the tokenizer's end of turn, prompts that fit the
context, the teacher's vocabulary and template. The model (and teacher) then load frozen in the precision asked
for, and one HFEngine renders and stops every completion as the run (or the options) say.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from distillrl.core.errors import UserError
from distillrl.models.loading import load_causal_lm, load_tokenizer, model_config
from distillrl.models.vocabulary import check_same_vocabulary
from distillrl.rollout.engines import HFEngine
from distillrl.run.eval_setup import EvalOptions, EvalSetup, eval_setup
from distillrl.run.evaluate import evaluate_with_samples
from distillrl.run.runtime import frozen_dtype
from distillrl.tasks import build_task
from distillrl.tasks.prompt_limits import check_prompts_fit, max_positions
from distillrl.tasks.rewards import RewardError, check_eval_answers, check_task_answers
from distillrl.text.chat import check_end_of_turn, check_teacher_template


@dataclass
class ModelEval:
    """What an evaluation measured (`eval/...` metrics), on what (`setup`), how many prompts, and its completions as
    samples rows (report/samples.py: each prompt's greedy and sampled completion)."""

    metrics: dict[str, float]
    setup: EvalSetup
    num_prompts: int
    samples: list[dict]


def evaluate_model(model: str, options: EvalOptions = EvalOptions(), teacher: str | None = None,
                   temperature: float = 1.0, precision: str = "fp32", batch_size: int = 256,
                   status=None) -> ModelEval:  # fmt: skip
    """Evaluate `model` (zoo:NAME, a run directory, a model directory or hub id) on the held-out prompts that
    `options` and, for a run directory, its config name; `status(text)` (optional) is a context manager shown
    while the model generates."""
    if precision not in ("fp32", "bf16"):
        raise UserError(f"--precision {precision}: use fp32 or bf16")
    context = max_positions(model_config(model))
    setup = eval_setup(model, options, context)
    try:
        task = build_task(setup.task)
    except RewardError as error:  # named as the option that gave it
        if options.reward is None:
            raise
        raise UserError(f"--reward: {str(error).removeprefix('task.reward: ')}") from None
    problems = task.test_problems(setup.num_prompts)
    check_eval_answers(task, setup.num_prompts)
    tokenizer = load_tokenizer(model)
    check_end_of_turn(tokenizer, f"--model {model}")
    located = task.located_prompts(setup.num_prompts)
    check_prompts_fit(located, tokenizer, f"--model {model}", context, setup.max_new_tokens, setup.chat)
    check_task_answers(task, tokenizer, trained=False, stop_strings=setup.chat.stop_strings)
    if teacher:
        check_same_vocabulary(model, teacher, "--teacher")
        check_teacher_template(tokenizer, load_tokenizer(teacher), setup.chat, model, teacher, "--teacher")
        check_prompts_fit(located, tokenizer, f"--teacher {teacher}", max_positions(model_config(teacher)),
                          setup.max_new_tokens, setup.chat)  # fmt: skip
    student = load_causal_lm(model, dtype=frozen_dtype(precision))
    teacher_model = load_causal_lm(teacher, dtype=frozen_dtype(precision)) if teacher else None
    engine = HFEngine(student, tokenizer, batch_size, setup.chat)
    with status(f"evaluating {model} on {len(problems)} prompts") if status else contextlib.nullcontext():
        metrics, samples = evaluate_with_samples(student, tokenizer, task, problems, teacher_model, temperature,
                                                 setup.max_new_tokens, batch_size, precision, engine)  # fmt: skip
    return ModelEval(metrics, setup, len(problems), samples)
