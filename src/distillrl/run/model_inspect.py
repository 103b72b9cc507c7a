"""What `distillrl inspect` samples and scores: the models, the prompts, and the rendering a run trains with.

The rendering (chat template kwargs, stop strings, truncation) and the completion length are what `distillrl eval`
takes (run/eval_setup.py) from the options and, for a run directory, from the run's own `config.yaml`. `--run
RUN_DIR` takes the student (its final/), the teacher (unless `--teacher`), the rendering and the prompts from the
run. The prompts are the `--prompt` texts (an arith prompt's answer is known), else the first `n` rows of a prompt
file (`--prompts`, rows as task.train_path's, read with the run's columns and verifier when it trained on prompt
files), else the first `n` held-out prompts of the student's run's task (arith for any other model).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distillrl.core.errors import UserError
from distillrl.models.loading import load_causal_lm, load_tokenizer, model_config
from distillrl.models.vocabulary import check_same_vocabulary
from distillrl.report.forking import SampleView, inspect_samples
from distillrl.run.eval_setup import EvalOptions, EvalSetup, eval_setup, run_config
from distillrl.tasks import build_task
from distillrl.tasks.arith import answer_of
from distillrl.tasks.base import Problem
from distillrl.tasks.prompt_limits import check_prompts_fit, max_positions
from distillrl.text.chat import check_end_of_turn, check_teacher_template


@dataclass(frozen=True)
class InspectOptions:
    """The options of `distillrl inspect` (None: not given)."""

    student: str | None = None
    teacher: str | None = None
    run: str | None = None
    prompts: tuple[str, ...] = ()
    prompt_file: str | None = None
    n: int = 4  # prompts taken from the prompt file or the task
    samples: int = 4
    temperature: float = 1.0
    max_new_tokens: int | None = None
    chat_template_kwargs: str | None = None  # a JSON/YAML mapping
    stop_strings: tuple[str, ...] = ()
    seed: int = 0


@dataclass
class Inspection:
    """The samples, of which models, rendered how."""

    student: str
    teacher: str
    setup: EvalSetup
    views: list[SampleView]


def run_models(options: InspectOptions) -> tuple[str, str, bool]:
    """(student, teacher, whether the teacher's template is checked against the student's) of the options: `--run`'s
    model and its one local teacher (its `chat_template: student` skips the check), or `--student` and `--teacher`."""
    if options.run is None:
        if options.student is None or options.teacher is None:
            raise UserError(f"{'--teacher' if options.student else '--student'}: missing (or give --run RUN_DIR)")
        return options.student, options.teacher, True
    if options.student is not None:
        raise UserError(f"--run {options.run} and --student {options.student}: give one (--run takes its student)")
    config = run_config(options.run)
    if config is None:
        raise UserError(f"--run {options.run}: not a run directory (no config.yaml in it)")
    if options.teacher is not None:
        return options.run, options.teacher, True
    teachers = config.teacher_list
    if len(teachers) != 1 or teachers[0].backend != "local":
        held = f"{len(teachers)} teachers" if len(teachers) != 1 else f"a teacher by {teachers[0].backend}"
        raise UserError(f"--run {options.run}: the run has {held}; give --teacher MODEL")
    return options.run, teachers[0].path, teachers[0].chat_template == "check"


def inspect_models(options: InspectOptions) -> Inspection:
    """Check everything before any weights load (prompts, end of turn, context, vocabulary, template), then sample
    `options.samples` completions per prompt from the student and score each token against the teacher."""
    empty = next((i for i, text in enumerate(options.prompts) if not text), None)
    if empty is not None:
        raise UserError(f"--prompt: prompt {empty + 1} is empty")
    if options.prompts and options.prompt_file is not None:
        raise UserError("--prompt and --prompts: give one")
    student, teacher, check_template = run_models(options)
    named = f"--run {student}" if options.run else f"--student {student}"
    run = run_config(student)
    if not options.prompts and options.prompt_file is None and run and run.task.name == "prompts" \
            and not run.task.test_path:  # fmt: skip
        raise UserError(f"{named}: the run's task has no task.test_path to take prompts from; give --prompts FILE "
                        "or --prompt TEXT")  # fmt: skip
    context = max_positions(model_config(student))
    given = EvalOptions(task="arith" if options.prompts else options.prompt_file, n=options.n,
                        max_new_tokens=options.max_new_tokens, chat_template_kwargs=options.chat_template_kwargs,
                        stop_strings=list(options.stop_strings))  # fmt: skip
    setup = eval_setup(student, given, context)
    task = build_task(setup.task)
    if options.prompts:
        problems = [Problem(text, answer_of(text)) for text in options.prompts]
        located = [(f"--prompt {i + 1}", text) for i, text in enumerate(options.prompts)]
    else:
        problems, located = task.test_problems(setup.num_prompts), task.located_prompts(setup.num_prompts)
    tokenizer = load_tokenizer(student)
    check_end_of_turn(tokenizer, named)
    check_same_vocabulary(student, teacher, "--teacher")
    if check_template:
        check_teacher_template(tokenizer, load_tokenizer(teacher), setup.chat, student, teacher, "--teacher")
    for name, path in ((named, student), (f"--teacher {teacher}", teacher)):
        check_prompts_fit(located, tokenizer, name, max_positions(model_config(path)), setup.max_new_tokens, setup.chat)
    student_model, teacher_model = load_causal_lm(student), load_causal_lm(teacher)

    def verify(index: int, completion: str) -> bool | None:
        problem = problems[index]
        return None if problem.answer is None else task.reward(problem, completion) > 0

    torch.manual_seed(options.seed)
    views = inspect_samples(student_model, teacher_model, tokenizer, [p.prompt for p in problems], options.samples,
                            options.temperature, setup.max_new_tokens, verify, setup.chat)  # fmt: skip
    return Inspection(student, teacher, setup, views)
