"""The reproduction benchmark (`distillrl bench repro`), the forking-token view and what they rely on."""

import json
import math
import random
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from distillrl.bench import sweep
from distillrl.bench.context import HARD_RUN, BenchContext, merged
from distillrl.bench.curves import MeanCurve, first_reaching, interpolate
from distillrl.bench.experiments import EXPERIMENTS
from distillrl.bench.experiments.fusion import rule_four
from distillrl.bench.experiments.lambda_sweep import rule_two
from distillrl.bench.experiments.mode_seeking import DIVERGENCES, fit, mass_near_one_mode, teacher_logprobs
from distillrl.bench.experiments.one_prompt import rule_six
from distillrl.bench.experiments.opd_vs_rl import rule_one
from distillrl.bench.experiments.rl_with_teacher import rule_five
from distillrl.bench.experiments.strong_to_weak import rule_three
from distillrl.bench.methods import STEPS
from distillrl.bench.report import RULES, Claim, ExperimentResult, Table, mean_std, render_report
from distillrl.bench.repro import check_out_dir
from distillrl.cli import app
from distillrl.config import TrainConfig
from distillrl.core.errors import UserError
from distillrl.models.loading import load_causal_lm, load_tokenizer
from distillrl.report.forking import inspect_samples, render_html
from distillrl.rollout.hf_generate import generate
from distillrl.run.evaluate import token_entropy
from distillrl.run.roles import load_models
from distillrl.run.sources import sample_sequences
from distillrl.run.trainer import train
from distillrl.scoring.logits import ChunkedLogits
from distillrl.tasks import build_task


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
    import distillrl.run.trainer as trainer

    calls = []
    real = trainer.evaluate_with_samples
    monkeypatch.setattr(trainer, "evaluate_with_samples",
                        lambda model, *a, **k: calls.append(model) or real(model, *a, **k))
    cache = {}
    first = train(tiny_config(optim={"steps": 1}, eval={"every": 0, "num_prompts": 8}), show_progress=False,
                  eval_cache=cache)  # fmt: skip
    assert len(calls) == 3  # teacher, student before, student after
    second = train(tiny_config(output_dir=str(tmp_path / "again"), optim={"steps": 1}, eval={"every": 0, "num_prompts": 8}),
                   show_progress=False, eval_cache=cache)  # fmt: skip
    assert len(calls) == 4  # only the trained student
    assert second["teacher"] == first["teacher"] and second["before"]["eval/accuracy_greedy"] == first["before"]["eval/accuracy_greedy"]


def test_verdict_rules_follow_testbed_md_to_the_number():
    assert rule_one(20, 100) == (True, "5.0x fewer steps")  # GRPO / OPD >= 5
    assert rule_one(40, 100)[0] is None and rule_one(50, 99)[0] is False  # 2.5x partly, 1.98x not
    assert rule_one(None, 100)[0] is False and rule_one(25, None) == (False, "GRPO did not reach it within the doubled budget")
    assert rule_one(0, 50)[0] is True and rule_one(0, 0)[0] is False  # OPD's student starts there
    assert rule_two(0.60, 0.005, 0.585) is True  # +0.015 > 0.01 and > std
    assert rule_two(0.60, 0.02, 0.585) is None and rule_two(0.578, 0.0, 0.585) is None  # above but within the spread; -0.007
    assert rule_two(0.57, 0.0, 0.585) is False
    assert rule_three([0.28, 0.35, 0.40, 0.45]) is True
    assert rule_three([0.28, 0.40, 0.35, 0.45]) is None  # all above base, one pair out of order
    assert rule_three([0.28, 0.40, 0.35, 0.30]) is False and rule_three([0.28, 0.27, 0.35, 0.45]) is False
    assert rule_four({"arith": 0.58, "lists": 0.9}, {"arith": 0.575, "lists": 0.9}) is True  # >= counts
    assert rule_four({"arith": 0.58, "lists": 0.8}, {"arith": 0.575, "lists": 0.9}) is None
    assert rule_four({"arith": 0.5, "lists": 0.8}, {"arith": 0.575, "lists": 0.9}) is False
    assert rule_five(0.50, 0.48, 0.46) is True and rule_five(0.50, 0.495, 0.46) is None and rule_five(0.5, 0.5, 0.5) is False
    assert rule_six(0.52, 0.28, 0.575) is True and rule_six(0.30, 0.28, 0.575) is None
    assert rule_six(0.25, 0.28, 0.575) is False and rule_six(0.27, 0.30, 0.575) is False


def test_report_rules_are_testbed_md_word_for_word():
    testbed = (Path(__file__).parents[1] / "docs" / "results" / "TESTBED.md").read_text()

    def words(text):
        return " ".join(text.split())

    assert words(RULES) in words(testbed)


def test_reach_and_interpolation_on_the_seed_mean_curve():
    curve = MeanCurve(steps=[0, 25, 50], seconds=[0.0, 10.0, 22.0], means=[0.3, 0.45, 0.6], stds=[0, 0, 0])
    assert first_reaching(curve, 0.45) == (25, 10.0) and first_reaching(curve, 0.2) == (0, 0.0)
    assert first_reaching(curve, 0.61) is None
    assert interpolate(curve.seconds, curve.means, 16.0) == pytest.approx(0.525)
    assert interpolate(curve.steps, curve.means, 99) == 0.6 and interpolate(curve.steps, curve.means, -1) == 0.3


def test_sweep_plan_is_the_pre_registered_grid_on_the_validation_split():
    runs = sweep.sweep_runs(quick=False)
    assert len(runs) == 18 and {(r.method, r.lr) for r in runs} == {(m, lr) for m, g in sweep.GRIDS.items() for lr in g}
    assert sweep.GRIDS["grpo"] == sweep.GRIDS["rlad"] == (3e-5, 1e-4, 3e-4)
    assert all(sweep.GRIDS[m] == (1e-4, 3e-4, 1e-3) for m in ("opd", "exopd", "sft", "kdrl"))
    for run in runs:
        data = merged(HARD_RUN, run.settings)
        assert data["eval"]["split"] == "validation" and data["optim"]["lr"] == run.lr
        assert data["optim"]["steps"] == STEPS[run.method] and data["task"]["difficulty"]["min_ops"] == 3
        TrainConfig.model_validate(merged(data, {"output_dir": "x"}))
    assert [STEPS[r.method] for r in runs] == sorted((STEPS[r.method] for r in runs), reverse=True)


def test_sweep_chooses_the_best_final_validation_accuracy_ties_to_the_smaller_lr(tmp_path):
    finals = {"opd": (0.30, 0.40, 0.40), "grpo": (0.35, 0.30, 0.20)}
    results = [{"method": m, "lr": lr, "final": finals.get(m, (0.1, 0.1, 0.1))[i], "steps": [0, 2],
                "accuracy": [0.28, 0.3], "train_seconds": 1.0}
               for m, grid in sweep.GRIDS.items() for i, lr in enumerate(grid)]  # fmt: skip
    data = sweep.write_sweep(tmp_path, results, quick=False)
    assert sweep.chosen_lrs(data) == {"opd": 3e-4, "exopd": 1e-4, "sft": 1e-4, "kdrl": 1e-4, "grpo": 3e-5, "rlad": 3e-5}
    saved = tmp_path / "bench" / sweep.FILE
    assert sweep.load_sweep(saved, quick=False) == json.loads(saved.read_text())
    assert "**chosen**" in sweep.sweep_table(data).markdown()
    data["methods"].pop("kdrl")
    saved.write_text(json.dumps(data))
    with pytest.raises(UserError, match=re.escape(f"--sweep-from {saved}: no chosen lr for method 'kdrl'")):
        sweep.load_sweep(saved, quick=False)
    result = CliRunner().invoke(app, ["bench", "repro", "--sweep-from", str(saved), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no chosen lr for method 'kdrl'" in result.output
    sweep.write_sweep(tmp_path, results, quick=True)
    with pytest.raises(UserError, match="holds a --quick sweep"):
        sweep.load_sweep(saved, quick=False)
    ctx = BenchContext([0], False, tmp_path, tmp_path, lrs=sweep.chosen_lrs(data))
    assert ctx.lr("opd") == 3e-4
    with pytest.raises(UserError, match="no lr for 'kdrl' from the lr sweep"):
        ctx.lr("kdrl")


def test_workers_keep_experiments_sharing_runs_together_and_balance_the_rest():
    from distillrl.bench.experiments import SHARED_RUNS, worker_groups

    groups = worker_groups(list(EXPERIMENTS), 2)
    assert sorted(name for group in groups for name in group) == sorted(EXPERIMENTS)  # each once
    for user, owner in SHARED_RUNS.items():
        assert any(user in group and owner in group for group in groups), (user, owner)
    assert all(group == sorted(group, key=EXPERIMENTS.index) for group in groups)  # report order in each
    assert worker_groups(["fusion", "one_prompt"], 4) == [["fusion"], ["one_prompt"]]  # no empty workers
    assert worker_groups(list(EXPERIMENTS), 1) == [list(EXPERIMENTS)]


def test_the_report_gives_the_wall_clock_of_a_workers_run_and_where_the_sweep_ran(tmp_path):
    from distillrl.bench.report import PARALLEL_FILE, ExperimentResult, render_report

    for name, minutes in (("fusion", 20.0), ("one_prompt", 2.0)):
        result = ExperimentResult(name, name, "setup.", [0, 1, 2], quick=False)
        result.wall_seconds = minutes * 60
        result.save(tmp_path)
    one_process = render_report(tmp_path, list(EXPERIMENTS), None, 240.0, "16 CPU cores").read_text()
    assert "**22.0 min**, the sum of each one's latest run" in one_process and "4.0 min on 16 CPU cores" in one_process
    (tmp_path / "bench" / PARALLEL_FILE).write_text(json.dumps({"groups": [["fusion"], ["one_prompt"]], "wall_seconds": 1230}))
    parallel = render_report(tmp_path, list(EXPERIMENTS), None, 240.0, "16 CPU cores").read_text()
    assert "**20.5 min** as 2 processes of one torch thread each (`--workers 2`: fusion; one_prompt)" in parallel
