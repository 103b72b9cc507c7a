"""What `distillrl eval` evaluates: the task, its verifier, the lengths and the rendering, from the options given
and, for a run directory, from the run's own `config.yaml`.

A run directory is evaluated as the run evaluated itself: its task (a generator and its difficulty, or its
held-out prompt file `task.test_path` with its split and columns), its verifier (`task.answer_format`,
`answer_tag`, `answer_match`, `reward`), `eval.num_prompts`, `eval.max_new_tokens`, `task.chat_template_kwargs`,
`task.truncate` and `rollout.stop_strings`. Each option given overrides its part: `--task` another task (a prompt
file keeps the run's verifier and columns when the run trained on prompt files too), `--level` a generator's
difficulty, `--answer-format`, `--answer-tag`, `--answer-match`, `--reward`, `--columns`, `--n`,
`--max-new-tokens`, `--chat-template-kwargs` and `--stop-string`. Any other model is evaluated on `--task`
(default arith) with the defaults of each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from distillrl.config import COMBINATION_ERROR, TaskConfig, TrainConfig, load_config
from distillrl.core.errors import UserError, one_line
from distillrl.tasks.levels import TASK_LEVELS, level_task
from distillrl.text.chat import ChatFormat

BUILTIN_TASKS = ("arith", "lists", "mix")
VERIFIER_FIELDS = ("answer_format", "answer_tag", "answer_match", "reward")
RENDERING_FIELDS = ("chat_template_kwargs", "truncate")
FLAGS = {"answer_format": "--answer-format", "answer_tag": "--answer-tag", "answer_match": "--answer-match",
         "reward": "--reward", "columns": "--columns", "chat_template_kwargs": "--chat-template-kwargs"}  # fmt: skip
DEFAULT_PROMPTS, DEFAULT_MAX_NEW_TOKENS = 200, 48


@dataclass(frozen=True)
class EvalOptions:
    """The options of `distillrl eval` (None: not given)."""

    task: str | None = None
    level: str | None = None
    n: int | None = None
    max_new_tokens: int | None = None
    answer_format: str | None = None
    answer_tag: str | None = None
    answer_match: str | None = None
    reward: str | None = None
    columns: str | None = None  # a JSON/YAML mapping
    chat_template_kwargs: str | None = None  # a JSON/YAML mapping
    stop_strings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EvalSetup:
    task: TaskConfig
    source: str  # what the task is and where it came from, for the table's title
    num_prompts: int
    max_new_tokens: int
    chat: ChatFormat


def run_config(model: str) -> TrainConfig | None:
    """The config a run directory `model` trained with (its `config.yaml`); None for any other model."""
    path = Path(model) / "config.yaml"
    return load_config(path) if path.is_file() else None


def parse_mapping(text: str, option: str, example: str) -> dict:
    """A JSON or YAML mapping given on the command line; a UserError naming `option` otherwise."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UserError(f"{option}: not JSON or YAML ({getattr(error, 'problem', None) or one_line(error)})") from None
    if not isinstance(value, dict):
        raise UserError(f"{option}: must be a mapping, e.g. '{example}' (got {text!r})")
    return value


def validated_task(data: dict) -> TaskConfig:
    """The TaskConfig of `data`; a UserError naming the option of the field it refuses."""
    try:
        return TaskConfig.model_validate(data)
    except ValidationError as error:
        item = error.errors()[0]
        message = item["msg"].removeprefix("Value error, ")
        named = COMBINATION_ERROR.match(message)
        name = named["field"] if named else str(item["loc"][0]) if item["loc"] else "task"
        if named:
            message = named["message"]
        elif not isinstance(item.get("input"), (dict, list)):
            message += f" (got {item['input']!r})"
        raise UserError(f"{FLAGS.get(name.split('.')[0], '--task')}: {message}") from None


def task_data(model: str, options: EvalOptions, run: TrainConfig | None) -> tuple[dict, str]:
    """The TaskConfig data to evaluate on, before the verifier options, and what it is for the title."""
    run_task = run.task.model_dump() if run is not None else None
    if options.task is None and run_task is not None:
        where = f"the run's task, {Path(model) / 'config.yaml'}"
        if run_task["name"] == "prompts":
            if not run_task["test_path"]:
                raise UserError(f"--model {model}: the run's task has no task.test_path to evaluate on; give --task FILE")
            held_out = {"train_path": run_task["test_path"], "train_split": run_task["test_split"]}
            return {**run_task, **held_out}, f"{run_task['test_path']} ({where})"
        if options.level is not None:
            run_task = {**run_task, **level_task(run_task["name"], options.level)}
        return run_task, f"{run_task['name']} ({where})"
    name = options.task or "arith"
    inherited = {key: run_task[key] for key in RENDERING_FIELDS} if run_task else {}
    if name in BUILTIN_TASKS:
        return {**level_task(name, options.level or "standard"), **inherited}, name
    if run_task and run_task["name"] == "prompts":  # a prompt file read as the run read its own
        inherited |= {key: run_task[key] for key in (*VERIFIER_FIELDS, "columns")}
    return {"name": "prompts", "train_path": name, "test_path": name, **inherited}, name


def eval_setup(model: str, options: EvalOptions, context: int | None) -> EvalSetup:
    """The task, prompt count, length and rendering `distillrl eval --model MODEL` evaluates with (see the module
    docstring); `context`: the model's positions (None: unbounded), for `task.truncate: left`."""
    if options.level is not None and options.level not in TASK_LEVELS:
        raise UserError(f"--level: unknown level {options.level!r} (have: {', '.join(TASK_LEVELS)})")
    if any(not stop for stop in options.stop_strings):
        raise UserError("--stop-string: a stop string must not be empty")
    run = run_config(model)
    data, source = task_data(model, options, run)
    given = {key: getattr(options, key) for key in VERIFIER_FIELDS if getattr(options, key) is not None}
    if options.columns is not None:
        given["columns"] = parse_mapping(options.columns, "--columns", "{prompt: question, answer: final}")
    if options.chat_template_kwargs is not None:
        given["chat_template_kwargs"] = parse_mapping(options.chat_template_kwargs, "--chat-template-kwargs",
                                                      '{"enable_thinking": false}')  # fmt: skip
    task = validated_task({**data, **given})
    num_prompts = options.n or (run.eval.num_prompts if run else DEFAULT_PROMPTS)
    max_new_tokens = options.max_new_tokens or (run.eval.max_new_tokens if run else DEFAULT_MAX_NEW_TOKENS)
    stops = tuple(options.stop_strings) or (tuple(run.rollout.stop_strings) if run else ())
    cut = task.truncate == "left" and context is not None
    chat = ChatFormat(dict(task.chat_template_kwargs), stops, context - max_new_tokens if cut else None, task.truncate)
    return EvalSetup(task, source, num_prompts, max_new_tokens, chat)
