"""distillrl from Python: the same runs, files, checks and one-line errors as the command line.

    import distillrl
    config = distillrl.load_config("configs/opd.yaml", {"optim.steps": 4, "output_dir": "runs/api"})
    result = distillrl.train(config, on_step=lambda step, record: print(step, record["train/loss"]))
    result.metrics[-1]["eval/accuracy_greedy"]    # every metrics.jsonl record, as dicts
    result.final_model                            # OUTPUT_DIR/final
    distillrl.evaluate("zoo:student-base", task="arith", n=20)["accuracy_greedy"]

Python objects go in where a notebook has them: `train(reward=fn)` takes a function of (prompt, completion, row);
`train_data=` / `test_data=` a list of rows or a `datasets.Dataset`; `student=` / `tokenizer=` a loaded model and
its tokenizer. Rows and models are written once, content-addressed, under `INPUTS` beside the run directory
(`runs/inputs/` for `runs/api`), and the run's config.yaml names those files: the run resumes, evaluates and
exports from the command line like any other. Every user error (a config field, a row, a model) is a
`distillrl.UserError` whose message is the command line's one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from distillrl.config import TrainConfig, load_config, set_field
from distillrl.core.errors import UserError
from distillrl.core.files import temporary_directory, write_text_atomic
from distillrl.models.run_paths import FINAL_MODEL
from distillrl.report.metrics import read_metrics
from distillrl.report.samples import write_samples
from distillrl.run.eval_setup import EvalOptions
from distillrl.run.model_eval import evaluate_model
from distillrl.run.trainer import train as run_training
from distillrl.tasks.rewards import CustomReward, check_reward_signature

INPUTS = "inputs"  # beside OUTPUT_DIR: the rows and models given as Python objects, one folder or file each


@dataclass
class TrainResult:
    """A finished run: where it is, its summary (the evaluations before and after, the teachers'), its records."""

    run_dir: Path
    summary: dict

    @property
    def final_model(self) -> Path:
        """The trained model (Hugging Face layout, with its tokenizer): OUTPUT_DIR/final."""
        return self.run_dir / FINAL_MODEL

    @property
    def metrics(self) -> list[dict]:
        """Every record of the run's metrics.jsonl, oldest first (step 0 is the evaluation before training)."""
        return read_metrics(self.run_dir)


def train(config: TrainConfig | str | Path | dict, overrides: dict[str, Any] | None = None, *,
          resume: bool = False, overwrite: bool = False, on_step: Callable[[int, dict], None] | None = None,
          progress: bool = True, reward: Callable | None = None, train_data: Iterable[dict] | None = None,
          test_data: Iterable[dict] | None = None, student=None, tokenizer=None) -> TrainResult:  # fmt: skip
    """Run `config` (a TrainConfig, a YAML path or a dict of fields; `overrides` as in `load_config`) as `distillrl
    train` does, and return its TrainResult.

    `on_step(step, record)` is called after every step with that step's metrics record (as metrics.jsonl holds it).
    `reward`: a function (prompt, completion, row) -> float that replaces the task's reward for this run.
    `train_data` / `test_data`: rows (dicts with `prompt` or `messages`, and `answer`, `completion`, `domain`) or a
    `datasets.Dataset`: the run's task becomes a prompts task over them. `student` (with its `tokenizer`): a loaded
    causal LM to train instead of `student.path`.
    """
    if not isinstance(config, TrainConfig):
        config = load_config(config, overrides or {}) if isinstance(config, (str, Path)) else TrainConfig(**config)
    elif overrides:
        config = TrainConfig(**_with_fields(config.model_dump(mode="json"), overrides))
    inputs = Path(config.output_dir).parent / INPUTS
    fields: dict[str, Any] = {}
    if train_data is not None:
        fields |= {"task.name": "prompts", "task.train_path": str(_stored_rows(train_data, inputs, "train_data"))}
    if test_data is not None:
        fields["task.test_path"] = str(_stored_rows(test_data, inputs, "test_data"))
    if student is not None:
        if tokenizer is None:
            raise UserError("student: a model given as an object needs its tokenizer (tokenizer=)")
        fields["student.path"] = str(_stored_model(student, tokenizer, inputs))
    if fields:
        config = TrainConfig(**_with_fields(config.model_dump(mode="json"), fields))
    custom = None
    if reward is not None:
        name = f"{getattr(reward, '__module__', '?')}:{getattr(reward, '__qualname__', repr(reward))}"
        check_reward_signature(reward, name)
        custom = CustomReward(name, reward)
    summary = run_training(config, resume=resume, overwrite=overwrite, on_step=on_step, show_progress=progress,
                           reward=custom)  # fmt: skip
    return TrainResult(Path(config.output_dir), summary or {})


def evaluate(model: str | Path | TrainResult, task: str | None = None, n: int | None = None, *,
             level: str | None = None, teacher: str | None = None, temperature: float = 1.0,
             max_new_tokens: int | None = None, precision: str = "fp32", batch_size: int = 256,
             answer_format: str | None = None, answer_tag: str | None = None, answer_match: str | None = None,
             reward: str | None = None, columns: dict[str, str] | None = None,
             chat_template_kwargs: dict | None = None, stop_strings: list[str] = (),
             samples: str | Path | None = None) -> dict[str, float]:  # fmt: skip
    """Evaluate `model` (zoo:NAME, a run directory, a model directory, a hub id or a TrainResult) on held-out
    prompts exactly as `distillrl eval` does (same defaults, rendering, stop strings and verifier; a run directory is
    evaluated on its own task). Returns the metrics without their `eval/` prefix: accuracy_greedy,
    accuracy_sampled, response_length, entropy (and reverse_kl with a teacher). `samples`: a .jsonl file to write
    every completion to (as `distillrl eval --samples`)."""
    name = str(model.final_model if isinstance(model, TrainResult) else model)
    options = EvalOptions(task, level, n, max_new_tokens, answer_format, answer_tag, answer_match, reward,
                          None if columns is None else json.dumps(columns),
                          None if chat_template_kwargs is None else json.dumps(chat_template_kwargs),
                          list(stop_strings))  # fmt: skip
    result = evaluate_model(name, options, teacher, temperature, precision, batch_size)
    if samples is not None:
        write_samples(samples, result.samples)
    metrics = result.metrics
    return {key.removeprefix("eval/"): value for key, value in metrics.items()}


def _with_fields(data: dict, fields: dict[str, Any]) -> dict:
    """`data` (a config as plain data) with each dotted field of `fields` set."""
    for key, value in fields.items():
        set_field(data, key, value, f"overrides[{key!r}]")
    return data


def _stored_rows(rows: Iterable[dict], inputs: Path, field: str) -> Path:
    """The rows as JSON lines in `inputs/rows-SHA.jsonl` (SHA: the first 16 hex digits of their sha256), written
    once and atomically; a row that is not a JSON object is a UserError naming `field` and the row."""
    lines = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(f"{field}: row {index} is a {type(row).__name__}, not a mapping of fields")
        try:
            lines.append(json.dumps(row, ensure_ascii=False, sort_keys=True))
        except TypeError as error:
            raise UserError(f"{field}: row {index} does not convert to JSON ({error})") from None
    if not lines:
        raise UserError(f"{field}: no rows")
    text = "\n".join(lines) + "\n"
    path = inputs / f"rows-{hashlib.sha256(text.encode()).hexdigest()[:16]}.jsonl"
    if not path.exists():
        inputs.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    return path.resolve()


def _stored_model(model, tokenizer, inputs: Path) -> Path:
    """The model and its tokenizer saved (Hugging Face layout) in `inputs/model-SHA/` (SHA: of the saved files),
    once: saved into a temporary directory, hashed, then renamed into place unless the same files are there."""
    inputs.mkdir(parents=True, exist_ok=True)
    temporary = temporary_directory(".tmp-model-", inputs)
    try:
        model.save_pretrained(temporary)
        tokenizer.save_pretrained(temporary)
        digest = hashlib.sha256()
        for file in sorted(p for p in temporary.rglob("*") if p.is_file()):
            digest.update(file.relative_to(temporary).as_posix().encode())
            digest.update(file.read_bytes())
        target = inputs / f"model-{digest.hexdigest()[:16]}"
        if target.exists():
            shutil.rmtree(temporary)
        else:
            os.replace(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return target.resolve()
