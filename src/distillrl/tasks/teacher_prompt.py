"""A teacher's own prompt: a template over a problem's fields (`teacher.prompt`), such as `{solution}\\n\\n{prompt}`.

The fields of a problem are `prompt` (its user turn), `answer` and `solution` (the built-in tasks' worked chain of
thought, a prompt file's completion) and, for a prompt file, every column of its row that holds a string or a
number. The template is rendered with str.format; for a chat `messages` prompt it replaces the last user turn (whose
text is `{prompt}`), the other turns kept.
"""

from __future__ import annotations

import string

from distillrl.tasks.base import Problem
from distillrl.text.chat import Prompt


def template_fields(template: str) -> list[str]:
    """The fields a template names, in order; a ValueError (naming `prompt`, the config field) for a template that
    str.format cannot read or that asks more of a field than its text ({0}, {}, {a.b}, {a[0]}, {a!r}, {a:>9})."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ValueError(f"prompt: {template!r} is not a template ({error}; write a literal brace as {{{{ or }}}})") from None
    fields = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ValueError(f"prompt: {{{shown}}} is not a field; a template names fields as {{prompt}}, {{solution}}, "
                             "{COLUMN}")  # fmt: skip
        fields.append(name)
    return fields


def check_template(template: str) -> None:
    """A ValueError naming `prompt` when the template does not read or lacks {prompt} (the student's own prompt)."""
    if "prompt" not in template_fields(template):
        raise ValueError(f"prompt: {template!r} has no {{prompt}}; the teacher's prompt holds the student's, with more")


def problem_fields(problem: Problem) -> dict[str, str | None]:
    """Each field a template may name: its row's columns (strings and numbers), answer, solution and prompt."""
    row = {key: str(value) for key, value in (problem.row or {}).items()
           if isinstance(value, (str, int, float)) and not isinstance(value, bool)}  # fmt: skip
    return row | {"answer": problem.answer, "solution": problem.solution, "prompt": user_turn(problem.prompt)}


def user_turn(prompt: Prompt) -> str:
    """The text of a prompt's last user turn (a string prompt is one)."""
    if isinstance(prompt, str):
        return prompt
    return next(message["content"] for message in reversed(prompt) if message["role"] == "user")


def missing_fields(template: str, problem: Problem) -> list[str]:
    """The fields of `template` that `problem` lacks or leaves empty."""
    fields = problem_fields(problem)
    return [name for name in dict.fromkeys(template_fields(template)) if not fields.get(name)]


def render_teacher_prompt(template: str, problem: Problem) -> Prompt:
    """The teacher's prompt for `problem`: the template with its fields filled (for chat messages: as the last user
    turn)."""
    text = template.format(**problem_fields(problem))
    if isinstance(problem.prompt, str):
        return text
    last = max(i for i, message in enumerate(problem.prompt) if message["role"] == "user")
    return [*problem.prompt[:last], {**problem.prompt[last], "content": text}, *problem.prompt[last + 1 :]]
