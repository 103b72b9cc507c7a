"""The reproduction benchmark (`distillrl bench repro`), the forking-token view and what they rely on."""

import math
import random

import pytest
import torch
from typer.testing import CliRunner

from distillrl.bench.context import merged
from distillrl.bench.experiments.mode_seeking import DIVERGENCES, fit, mass_near_one_mode, teacher_logprobs
from distillrl.bench.report import Claim, ExperimentResult, Table, mean_std, render_report
from distillrl.bench.repro import check_out_dir
from distillrl.cli import app
from distillrl.evaluate import token_entropy
from distillrl.forking import inspect_samples, render_html
from distillrl.models.loading import load_causal_lm, load_tokenizer
from distillrl.models.roles import load_models
from distillrl.rollout.hf_generate import generate
from distillrl.rollout.sources import sample_sequences
from distillrl.scoring.logits import ChunkedLogits
from distillrl.tasks import build_task
from distillrl.trainer import train


def test_quick_refuses_a_folder_holding_full_results_and_accepts_a_quick_one(tmp_path):
    ExperimentResult("fusion", "F", "setup.", [0, 1, 2], quick=False).save(tmp_path / "full")
    with pytest.raises(ValueError, match=r"holds the full results of fusion"):
        check_out_dir(tmp_path / "full", quick=True)
    check_out_dir(tmp_path / "full", quick=False)
    ExperimentResult("fusion", "F", "setup.", [0], quick=True).save(tmp_path / "smoke")
    check_out_dir(tmp_path / "smoke", quick=True)


def test_unknown_experiment_is_refused_before_anything_runs(tmp_path):
    result = CliRunner().invoke(app, ["bench", "repro", "--only", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--only: unknown experiment 'nope'" in result.output


def test_mean_std_and_report_rendering(tmp_path):
    assert mean_std([0.5, 0.7]) == f"0.600 ± {math.sqrt(0.02):.3f}"
    assert mean_std([0.25]) == "0.250" and mean_std([]) == "-"
    result = ExperimentResult("x", "X", "setup.", [0, 1], False, wall_seconds=120,
                              tables=[Table("t", ["a", "b"], [["1", "2"]])],
                              claims=[Claim("c.", "1", "2", None, "why.")])  # fmt: skip
    result.save(tmp_path)
    report = render_report(tmp_path, ["x", "missing"]).read_text()
    assert "| a | b |" in report and "| 1 | 2 |" in report and "partly reproduced" in report and "2.0 min" in report


def test_merged_overrides_nested_settings_without_touching_the_base():
    base = {"a": {"b": 1, "c": 2}, "d": 3}
    assert merged(base, {"a": {"b": 5}, "d": None}) == {"a": {"b": 5, "c": 2}, "d": None}
    assert base == {"a": {"b": 1, "c": 2}, "d": 3}


def test_reverse_kl_seeks_a_mode_and_forward_kl_covers_both():
    target = teacher_logprobs()
    assert math.isclose(target.exp().sum().item(), 1.0, rel_tol=1e-5)
    reverse, forward = (fit(fn, seed=0, steps=1500) for fn in DIVERGENCES.values())
    assert mass_near_one_mode(reverse) > 0.95  # one mode: log 2 from the teacher, the best a single bump does
    assert mass_near_one_mode(forward) < 0.4
    assert math.isclose(DIVERGENCES["reverse KL (OPD)"](reverse, target).item(), math.log(2), abs_tol=0.01)


def test_token_entropy_matches_brute_force():
    logits = torch.randn(5, 7)
    probs = torch.softmax(logits, -1)
    expected = -(probs * probs.log()).sum(-1)
    torch.testing.assert_close(token_entropy(ChunkedLogits.from_logits(logits)), expected)


def test_forking_view_scores_each_sampled_token_against_the_teacher():
    student, teacher = load_causal_lm("zoo:student-base"), load_causal_lm("zoo:teacher")
    tokenizer = load_tokenizer("zoo:student-base")
    torch.manual_seed(0)
    views = inspect_samples(student, teacher, tokenizer, ["12+7*3=", "4*5-9="], num_samples=2,
                            verify=lambda i, completion: i == 0)  # fmt: skip
    assert len(views) == 4 and [v.correct for v in views] == [True, True, False, False]
    view = views[0]
    ids = tokenizer(view.prompt + view.completion, add_special_tokens=False)["input_ids"]
    prompt_length = len(tokenizer(view.prompt, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        s = torch.log_softmax(student(torch.tensor([ids])).logits[0], -1)
        t = torch.log_softmax(teacher(torch.tensor([ids])).logits[0], -1)
    for offset, token in enumerate(view.tokens[: len(ids) - prompt_length]):
        position = prompt_length - 1 + offset  # predicts token `offset` of the completion
        brute = (s[position].exp() * (s[position] - t[position])).sum().item()
        assert math.isclose(token.reverse_kl, brute, rel_tol=1e-3, abs_tol=1e-4)
        assert token.teacher_token == tokenizer.decode([t[position].argmax().item()])
    assert view.tokens[view.peak].reverse_kl == max(tok.reverse_kl for tok in view.tokens)
    page = render_html(views)
    assert page.count('class="sample"') == 4 and "teacher prefers" in page


def test_teacher_samples_come_from_the_teacher_of_each_prompts_domain(tiny_config):
    config = tiny_config(teacher=None, teachers=[{"name": "arith", "path": "zoo:teacher"},
                                                 {"name": "lists", "path": "zoo:student-base"}],
                         task={"name": "mix"}, rollout={"source": "teacher"}, objective={"name": "sft"})  # fmt: skip
    models = load_models(config, needs_reference=False)
    problems = [build_task(config.task).sample_train(random.Random(s)) for s in range(6)]
    torch.manual_seed(0)
    sequences, _ = sample_sequences(config, models, problems, random.Random(0))
    torch.manual_seed(0)
    expected = {}
    for teacher in models.teachers:
        mine = [i for i, p in enumerate(problems) if p.domain == teacher.name]
        part = generate(teacher.model, models.tokenizer, [problems[i].prompt for i in mine], 2, 1.0, 40)
        for row, prompt in enumerate(part.prompt_index.tolist()):
            expected.setdefault(mine[prompt], []).append(part.completions[row])
    assert sequences.prompt_index.tolist() == sorted(sequences.prompt_index.tolist())
    got = {}
    for row, prompt in enumerate(sequences.prompt_index.tolist()):
        got.setdefault(prompt, []).append(sequences.completions[row])
    assert got == expected


def test_eval_cache_reuses_the_evaluations_of_unchanged_checkpoints(tiny_config, tmp_path, monkeypatch):
    import distillrl.trainer as trainer

    calls = []
    real = trainer.evaluate
    monkeypatch.setattr(trainer, "evaluate", lambda model, *a, **k: calls.append(model) or real(model, *a, **k))
    cache = {}
    first = train(tiny_config(optim={"steps": 1}, eval={"every": 0, "num_prompts": 8}), show_progress=False,
                  eval_cache=cache)  # fmt: skip
    assert len(calls) == 3  # teacher, student before, student after
    second = train(tiny_config(output_dir=str(tmp_path / "again"), optim={"steps": 1}, eval={"every": 0, "num_prompts": 8}),
                   show_progress=False, eval_cache=cache)  # fmt: skip
    assert len(calls) == 4  # only the trained student
    assert second["teacher"] == first["teacher"] and second["before"]["eval/accuracy_greedy"] == first["before"]["eval/accuracy_greedy"]
