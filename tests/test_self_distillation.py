"""Self-distillation (issue 26): the teacher's own prompt (`teacher.prompt`) and the student as its own teacher
(`teacher.path: self`), with numbers.

The bed: zoo:student-base after a short SFT on arith where half the prompts hold the worked solution in front
(`SOLUTION PROMPT` -> the solution) and half do not (`PROMPT` -> `#ANSWER`, no steps): it learns to use a solution
in its context and still answers without steps when it has none.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from distillrl.config import ConfigError, TrainConfig, load_config
from distillrl.core.errors import UserError
from distillrl.models.loading import load_causal_lm, load_tokenizer
from distillrl.report.metrics import read_metrics
from distillrl.run.checkpoint import latest_checkpoint, load_trainer_state
from distillrl.run.roles import load_models
from distillrl.run.signals import score_rollout
from distillrl.run.sources import sample_sequences
from distillrl.run.trainer import train
from distillrl.scoring.frozen import FrozenScorer
from distillrl.scoring.privileged import TeacherPrompt
from distillrl.scoring.teachers import LocalTeacher
from distillrl.tasks import ArithTask
from distillrl.text.chat import PLAIN
from distillrl.text.sequences import encode_pairs

WITH_SOLUTION = "{solution} {prompt}"  # the zoo's vocabulary has no newline


def run_config(tmp_path: Path, name: str, **sections) -> TrainConfig:
    data = {"seed": 0, "output_dir": str(tmp_path / name), "tensorboard": False,
            "rollout": {"prompts_per_step": 4, "group_size": 2, "max_new_tokens": 24},
            "optim": {"steps": 3, "lr": 2e-3, "warmup_steps": 0, "schedule": "constant"},
            "eval": {"every": 0, "num_prompts": 8, "max_new_tokens": 24}, "checkpoint": {"every": 0}}  # fmt: skip
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(data.get(key), dict) else value
    return load_config(None, data)


def comparable(run_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in read_metrics(run_dir)]


@pytest.fixture(scope="module")
def bed(tmp_path_factory) -> str:
    """The run directory of the bed (its final/ is the model)."""
    root = tmp_path_factory.mktemp("bed")
    task, rng, rows = ArithTask(), random.Random(0), []
    for i in range(2000):
        p = task.sample_train(rng)
        prompt, completion = (f"{p.solution} {p.prompt}", p.solution) if i % 2 else (p.prompt, f"#{p.answer}")
        rows.append({"prompt": prompt, "completion": completion, "answer": p.answer})
    (root / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (root / "test.jsonl").write_text("".join(json.dumps({"prompt": p.prompt, "answer": p.answer}) + "\n"
                                             for p in task.test_problems(8)))  # fmt: skip
    config = run_config(root, "bed", teacher=None, objective={"name": "sft"},
                        task={"name": "prompts", "train_path": str(root / "train.jsonl"),
                              "test_path": str(root / "test.jsonl"), "answer_format": "hash"},
                        rollout={"source": "dataset", "prompts_per_step": 32, "group_size": 1, "max_new_tokens": 48},
                        optim={"steps": 80, "lr": 3e-3, "warmup_steps": 5, "schedule": "cosine"})  # fmt: skip
    train(config, show_progress=False)
    return config.output_dir


def solution_logprob(model_path: str, template: str) -> float:
    """The mean per-token log-prob that `model_path` gives the worked solutions of 32 held-out arith problems after
    the teacher's prompt `template`."""
    tokenizer, problems = load_tokenizer(model_path), ArithTask().test_problems(32)
    sequences = encode_pairs(tokenizer, [p.prompt for p in problems], [p.solution for p in problems])
    scored = TeacherPrompt(template, tokenizer, PLAIN).sequences(sequences, problems)
    assert torch.equal(scored.target_ids, sequences.target_ids)  # the same completion tokens, 1:1
    teacher = LocalTeacher(FrozenScorer(load_causal_lm(model_path)))
    parts = teacher.score(scored, torch.arange(len(scored)), None, False, 64, 1024)
    return torch.cat([signals.token_logprobs for _, signals in parts]).mean().item()


def test_the_solution_in_the_teachers_context_raises_its_log_prob_of_the_solution(bed):
    without, with_solution = solution_logprob(bed, "{prompt}"), solution_logprob(bed, WITH_SOLUTION)
    assert without < -0.8 and with_solution > -0.5, (without, with_solution)  # measured: -1.18 and -0.35


def test_the_teachers_prompt_keeps_the_completion_tokens_and_a_prompt_only_template_the_tensors():
    tokenizer, problems = load_tokenizer("zoo:student-base"), ArithTask().test_problems(3)
    sequences = encode_pairs(tokenizer, [p.prompt for p in problems], [f"#{p.answer}" for p in problems])
    same = TeacherPrompt("{prompt}", tokenizer, PLAIN).sequences(sequences, problems)
    assert torch.equal(same.input_ids, sequences.input_ids) and torch.equal(same.attention_mask, sequences.attention_mask)
    longer = TeacherPrompt(WITH_SOLUTION, tokenizer, PLAIN).sequences(sequences, problems)
    assert torch.equal(longer.target_ids, sequences.target_ids)
    assert torch.equal(longer.sequence_index, sequences.sequence_index)
    first = longer.input_ids[0][longer.attention_mask[0].bool()].tolist()
    assert tokenizer.decode(first) == f"{problems[0].solution} {problems[0].prompt}#{problems[0].answer}<eos>"


def test_base_self_teacher_with_the_students_prompt_is_a_zero_signal_run(tmp_path):
    base = {"path": "self", "self": "base", "prompt": "{prompt}"}
    config = run_config(tmp_path, "base", teacher=base)
    models = load_models(config, needs_reference=False)
    problems = [ArithTask().sample_train(random.Random(i)) for i in range(4)]
    sequences, _ = sample_sequences(config, models, problems, random.Random(0))
    batch = score_rollout(models, frozenset({"old_logprobs", "teacher_logprobs"}), sequences, problems,
                          ArithTask().reward)  # fmt: skip
    advantages = batch.teacher_logprobs - batch.old_logprobs  # the sampled reverse KL's A_t
    assert len(advantages) > 8 and torch.equal(advantages, torch.zeros_like(advantages))

    train(config, show_progress=False)
    same_model = run_config(tmp_path, "same", teacher={"path": "zoo:student-base"})  # no signal: teacher = student
    train(same_model, show_progress=False)
    records = comparable(config.output_dir)
    assert [r["train/loss"] for r in records if "train/loss" in r] == [0.0, 0.0, 0.0]
    assert [r["train/reverse_kl"] for r in records if "train/loss" in r] == [0.0, 0.0, 0.0]
    zero_signal = comparable(same_model.output_dir)
    assert [r.pop("eval/reverse_kl") for r in zero_signal if "eval/reverse_kl" in r] == [0.0, 0.0]  # steps 0, 3
    assert records == zero_signal  # a self-teacher is not evaluated as a model: no eval/reverse_kl
    start, final = load_causal_lm("zoo:student-base"), load_causal_lm(str(Path(config.output_dir) / "final"))
    assert all(torch.equal(a, b) for a, b in zip(start.state_dict().values(), final.state_dict().values()))


class Killed(Exception):
    pass


def test_an_ema_run_killed_and_resumed_ends_bit_identical(tmp_path):
    ema = {"teacher": {"path": "self", "self": "ema", "prompt": WITH_SOLUTION, "ema_rate": 0.5, "sync_every": 2},
           "optim": {"steps": 4, "minibatches": 2}, "checkpoint": {"every": 2}}  # fmt: skip
    straight = run_config(tmp_path, "straight", **ema)
    train(straight, show_progress=False)
    interrupted = run_config(tmp_path, "interrupted", **ema)

    def kill_at_step_3(step, record):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        train(interrupted, on_step=kill_at_step_3, show_progress=False)
    train(interrupted, resume=True, show_progress=False)
    assert comparable(interrupted.output_dir) == comparable(straight.output_dir)
    states = [load_trainer_state(latest_checkpoint(c.output_dir))["ema_teachers"]["teacher"] for c in (straight, interrupted)]
    assert states[0]["optimizer_steps"] == states[1]["optimizer_steps"] == 8  # 4 steps x 2 minibatches
    assert all(torch.equal(states[0]["weights"][name], weight) for name, weight in states[1]["weights"].items())
    student = load_causal_lm(str(Path(straight.output_dir) / "final")).state_dict()
    start = load_causal_lm("zoo:student-base").state_dict()
    name = next(iter(states[0]["weights"]))
    ema_weight = states[0]["weights"][name]
    assert not torch.equal(ema_weight, student[name]) and not torch.equal(ema_weight, start[name])


@pytest.mark.parametrize("teacher, message", [
    ({"path": "self", "self": "base", "prompt": "{solution}"}, "teacher.prompt: '{solution}' has no {prompt}"),
    ({"path": "self", "self": "base", "prompt": "{prompt"}, "teacher.prompt: '{prompt' is not a template"),
    ({"path": "self", "self": "base", "prompt": "{0} {prompt}"}, "teacher.prompt: {0} is not a field"),
    ({"path": "self", "self": "base", "prompt": "{hint} {prompt}"}, "teacher.prompt: {hint} is no field of the training rows (fields: answer, prompt, solution)"),
    ({"path": "self", "self": "base", "prompt": "{solution} " * 30 + "{prompt}"}, "teacher.prompt: the teacher's prompt of task arith: held-out problem"),
    ({"path": "self"}, "teacher.self: give `path: self` with `self: base | live | ema`"),
    ({"self": "live"}, "teacher.path: `self: live` is the student as its own teacher; set `path: self`"),
])  # fmt: skip
def test_bad_templates_and_self_teachers_are_refused_before_loading_naming_the_field(tmp_path, teacher, message):
    with pytest.raises((ConfigError, UserError)) as raised:
        train(run_config(tmp_path, "refused", teacher=teacher), show_progress=False)
    assert message in str(raised.value)
    assert not (tmp_path / "refused").exists()  # refused before the run directory, before any weights


def test_a_row_missing_the_field_is_refused_naming_its_line_or_skipped_with_a_count(tmp_path, capsys):
    rows = [{"prompt": "1+2=", "answer": "3", "hint": "1+2=3"}, {"prompt": "2+2=", "answer": "4", "hint": ""},
            {"prompt": "3+2=", "answer": "5"}]  # fmt: skip
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    task = {"name": "prompts", "train_path": str(data), "test_path": str(data), "answer_format": "hash"}
    teacher = {"path": "self", "self": "live", "prompt": "{hint} {prompt}"}
    with pytest.raises(UserError, match=rf"{data}:2: teacher.prompt needs {{hint}}, which this row lacks or leaves empty"):
        train(run_config(tmp_path, "refused", task=task, teacher=teacher), show_progress=False)
    skipping = run_config(tmp_path, "skipping", task=task, teacher={**teacher, "prompt_missing": "skip"},
                          optim={"steps": 1}, eval={"num_prompts": 3})  # fmt: skip
    train(skipping, show_progress=False)
    assert "teacher.prompt: 2 training rows lack a field of the template and are skipped" in capsys.readouterr().err
    samples = [json.loads(line) for line in (Path(skipping.output_dir) / "samples/step_000001.jsonl").open()]
    assert {row["prompt"] for row in samples if row["decoding"] == "rollout"} == {"1+2="}
