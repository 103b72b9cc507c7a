"""A teacher that sees more than the student: its own prompt (`teacher.prompt`), the student's completion after it.

The teacher's sequences are (its prompt's ids + the student's completion ids): the template is rendered for each
problem (tasks/teacher_prompt.py), through the chat template with the student's tokenizer, and the completion columns
are kept, so its log-probs log pi_T(y_t | x_T, y_<t) map 1:1 onto the student's completion tokens y_t and the Batch
keeps its shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from distillrl.core.errors import ConfigError, UserError
from distillrl.tasks import Problem, PromptsTask, Task
from distillrl.tasks.prompt_limits import check_prompts_fit
from distillrl.tasks.teacher_prompt import missing_fields, problem_fields, render_teacher_prompt, template_fields
from distillrl.text.chat import ChatFormat, prompt_token_ids
from distillrl.text.sequences import Sequences


@dataclass
class TeacherPrompt:
    """`template` rendered as the run renders prompts (`chat`, the student's `tokenizer`)."""

    template: str
    tokenizer: object
    chat: ChatFormat

    def sequences(self, sequences: Sequences, problems: list[Problem]) -> Sequences:
        """`sequences`' completions after the teacher's prompt of each row's problem."""
        prompts = [render_teacher_prompt(self.template, problem) for problem in problems]
        return sequences.with_prompts(prompt_token_ids(self.tokenizer, prompts, self.chat), self.tokenizer.pad_token_id)


def training_problems(task: Task, n_test: int) -> list[tuple[str, Problem]]:
    """(where, problem) of every training row of prompt files; for a generator, its first `n_test` held-out
    problems, which stand for its training problems (drawn alike)."""
    if isinstance(task, PromptsTask):
        return list(zip(task.train_where, task.train))
    return [(f"task {task.name}: held-out problem {i}", p) for i, p in enumerate(task.test_problems(n_test))]


def check_teacher_prompts(config, task: Task, tokenizer, chat: ChatFormat, context: int | None, shortest: str) -> int:
    """Before loading, each `teacher.prompt` against the training rows its teacher scores (routed by domain): a
    field that no row has is a ConfigError naming the field; a row that lacks one or leaves it empty is an error
    naming the row, or (prompt_missing: skip) is left out of training; a rendered prompt too long for the shortest
    context (with rollout.max_new_tokens) is refused, naming the row. Returns the number of rows skipped."""
    teachers = config.teacher_list
    templated = [index for index, teacher in enumerate(teachers) if teacher.prompt is not None]
    if not templated:
        return 0
    field = lambda index: f"teachers.{index}.prompt" if config.teachers else "teacher.prompt"  # noqa: E731
    rows = training_problems(task, config.eval.num_prompts)
    known = set().union(*(problem_fields(problem) for _, problem in rows))
    for index in templated:
        unknown = next((name for name in template_fields(teachers[index].prompt) if name not in known), None)
        if unknown is not None:
            raise ConfigError(f"{field(index)}: {{{unknown}}} is no field of the training rows (fields: "
                              f"{', '.join(sorted(known))})")  # fmt: skip
    names = [teacher.name for teacher in teachers]
    keep, rendered = [], []
    for where, problem in rows:
        index = names.index(problem.domain) if config.teachers else 0
        template = teachers[index].prompt
        missing = missing_fields(template, problem) if template is not None else []
        if missing and (teachers[index].prompt_missing == "error" or not isinstance(task, PromptsTask)):
            raise UserError(f"{where}: {field(index)} needs {{{missing[0]}}}, which this row lacks or leaves empty "
                            f"(give it, or set {field(index).removesuffix('.prompt')}.prompt_missing: skip)")  # fmt: skip
        keep.append(not missing)
        if template is not None and not missing:
            rendered.append((index, where, render_teacher_prompt(template, problem)))
    if not any(keep):
        raise UserError(f"{field(templated[0])}: every training row lacks a field of the template; none is left to train on")
    for index in templated:
        try:
            check_prompts_fit([(where, prompt) for i, where, prompt in rendered if i == index], tokenizer, shortest,
                              context, config.rollout.max_new_tokens, chat)  # fmt: skip
        except UserError as error:
            raise ConfigError(f"{field(index)}: the teacher's prompt of {error}") from None
    if isinstance(task, PromptsTask):
        task.keep_train(keep)
    return keep.count(False)
