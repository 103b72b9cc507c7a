"""Every method as a config switch: each recipe runs through the CLI; sources, routing and early errors."""

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from distillrl.cli import app
from distillrl.config import load_config
from distillrl.models.loading import load_causal_lm, load_tokenizer
from distillrl.report.metrics import read_metrics
from distillrl.rollout.hf_generate import generate
from distillrl.rollout.speculative import speculative_choice, speculative_generate
from distillrl.run.roles import load_models
from distillrl.run.signals import RoutingError, route_to_teachers, score_rollout
from distillrl.run.sources import sample_sequences
from distillrl.run.trainer import train
from distillrl.scoring.forward import completion_logits
from distillrl.tasks import Problem, build_task

RECIPES = sorted(Path(__file__).resolve().parent.parent.joinpath("configs").glob("*.yaml"))
SMALL = ["optim.steps=2", "rollout.prompts_per_step=4", "rollout.max_new_tokens=24", "eval.every=0",
         "eval.num_prompts=8", "eval.max_new_tokens=24", "checkpoint.every=0", "tensorboard=false"]  # fmt: skip
SIGNATURE_METRIC = {  # what shows that the recipe ran its own method
    "gkd": "train/on_policy", "skd": "train/speculative_acceptance", "multi_teacher_exopd": "train/teacher/lists/reward",
    "grpo": "train/clip_fraction", "rlad": "train/clip_fraction", "kdrl": "train/grpo/loss",
    "exopd": "train/gopd_reward", "exopd_reward_correction": "train/gopd_reward", "opd": "train/reverse_kl",
    "opd_full": "train/reverse_kl", "forward_kl": "train/forward_kl", "skew_kl": "train/skew_kl", "sft": "train/loss",
    "sdft": "train/reverse_kl", "opsd": "train/reverse_kl",
}  # fmt: skip


def test_every_method_has_a_recipe():
    assert {r.stem for r in RECIPES} == set(SIGNATURE_METRIC)


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_every_recipe_runs_a_few_steps_through_the_cli(recipe, tmp_path):
    out = tmp_path / recipe.stem
    overrides = [item for setting in [*SMALL, f"output_dir={out}"] for item in ("--set", setting)]
    result = CliRunner().invoke(app, ["train", str(recipe), *overrides])
    assert result.exit_code == 0, result.output
    records = read_metrics(out)
    assert [r["step"] for r in records] == [0, 1, 2]
    assert all(torch.isfinite(torch.tensor(r["train/loss"])) for r in records[1:])
    assert SIGNATURE_METRIC[recipe.stem] in records[-1]
    if recipe.stem == "multi_teacher_exopd":  # one row per teacher in the before/after table
        assert "teacher arith" in result.output and "teacher lists" in result.output
    assert (out / "checkpoints" / "step_000002" / "model").exists()


def test_speculative_choice_keeps_proposals_inside_the_teacher_top_k():
    teacher_logits = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    proposal, teacher_sample = torch.tensor([1, 1]), torch.tensor([0, 3])
    assert speculative_choice(proposal, teacher_logits, teacher_sample, top_k=2).tolist() == [1, 3]
    assert speculative_choice(proposal, teacher_logits, teacher_sample, top_k=3).tolist() == [1, 1]


def test_speculative_generation_with_top_1_greedy_is_the_teachers_greedy_decoding():
    student, teacher = load_causal_lm("zoo:student-base"), load_causal_lm("zoo:teacher")
    tokenizer = load_tokenizer("zoo:teacher")
    prompts = ["3+4*2=", "(7-2)*3=", "9*9-1="]
    interleaved, acceptance = speculative_generate(student, teacher, tokenizer, prompts, 1, 0.0, 30, top_k=1)
    reference = generate(teacher, tokenizer, prompts, 1, 0.0, 30)
    assert interleaved.completions == reference.completions
    assert 0.0 < acceptance < 1.0  # the non-thinking student agrees with the teacher only sometimes
    _, everything = speculative_generate(student, teacher, tokenizer, prompts, 2, 1.0, 30, top_k=len(tokenizer))
    assert everything == 1.0  # top-K = the vocabulary: every proposal is kept (pure on-policy)


def test_mixed_source_is_on_policy_with_probability_lmbda(tiny_config):
    config = tiny_config(rollout={"source": "mixed", "lmbda": 0.5}, objective={"name": "jsd"})
    models = load_models(config, needs_reference=False)
    problems = [build_task(config.task).sample_train(random.Random(0)) for _ in range(3)]
    rng = random.Random(0)
    draws = []
    for _ in range(40):
        sequences, metrics = sample_sequences(config, models, problems, rng)
        solutions = [p.solution for p in problems]
        assert (sequences.completions == solutions) == (metrics["on_policy"] == 0.0)
        assert len(sequences) == (3 * config.rollout.group_size if metrics["on_policy"] else 3)
        draws.append(metrics["on_policy"])
    assert 0.3 < sum(draws) / len(draws) < 0.7


def test_rows_are_routed_to_the_teacher_their_domain_names(tiny_config):
    config = tiny_config(teacher=None, teachers=[{"name": "arith", "path": "zoo:teacher"},
                                                 {"name": "lists", "path": "zoo:student-base"}],
                         task={"name": "mix"}, objective={"name": "gopd"})  # fmt: skip
    models = load_models(config, needs_reference=True)
    task = build_task(config.task)
    problems = [task.sample_train(random.Random(s)) for s in range(6)]
    assert {p.domain for p in problems} == {"arith", "lists"}
    torch.manual_seed(0)
    sequences, _ = sample_sequences(config, models, problems, random.Random(0))
    batch = score_rollout(models, frozenset({"teacher_logprobs", "reference_logprobs"}), sequences, problems, task.reward)
    for index, model in enumerate([models.teachers[0].model, models.teachers[1].model]):
        rows = (batch.teacher_index == index).nonzero().squeeze(-1)
        assert len(rows) and all(problems[sequences.prompt_index[r]].domain == ["arith", "lists"][index] for r in rows)
        alone = score_rollout(replace(models, teachers=[models.teachers[index]], reference=None),
                              frozenset({"teacher_logprobs"}), sequences.select(rows),
                              [problems[i] for i in range(len(problems))], task.reward)  # fmt: skip
        torch.testing.assert_close(batch.select(rows).teacher_logprobs, alone.teacher_logprobs)
    with pytest.raises(RoutingError, match="domain 'code', which names no teacher"):
        route_to_teachers([Problem("x", domain="code")], ["arith", "lists"])


def write_prompts(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.fixture
def no_model_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the error")

    monkeypatch.setattr("distillrl.run.trainer.load_models", refuse)


def test_impossible_runs_fail_before_any_model_loads(tmp_path, no_model_loading):
    with pytest.raises(ValueError, match=r"objective.top_k: 100 is larger than the vocabulary \(62 tokens"):
        train(load_config(None, ["objective.fidelity=topk", "objective.top_k=100", f"output_dir={tmp_path}"]))
    with pytest.raises(ValueError, match=r"rollout.speculative_top_k: 99 is larger than the vocabulary"):
        train(load_config(None, ["rollout.source=speculative", "objective.name=forward_kl",
                                 "rollout.speculative_top_k=99", f"output_dir={tmp_path}"]))  # fmt: skip
    unanswered = write_prompts(tmp_path / "train.jsonl", [{"prompt": "1+1=", "answer": "2"}, {"prompt": "2+2="}])
    prompts = ["task.name=prompts", f"task.train_path={unanswered}", f"task.test_path={unanswered}"]
    with pytest.raises(ValueError, match=r"train.jsonl:2: objective.name: rlad needs a verifiable reward"):
        train(load_config(None, ["objective.name=rlad", *prompts, f"output_dir={tmp_path}"]))
    with pytest.raises(ValueError, match=r"train.jsonl:1: rollout.source: 'mixed' trains on the dataset's solutions, "
                                         r"but this row has no `completion`"):
        train(load_config(None, ["objective.name=jsd", "rollout.source=mixed", *prompts, f"output_dir={tmp_path}"]))
    routed = write_prompts(tmp_path / "routed.jsonl", [{"prompt": "1+1=", "answer": "2", "domain": "arith"},
                                                       {"prompt": "sum[1]=", "answer": "1", "domain": "code"}])  # fmt: skip
    teachers = "teachers=[{name: arith, path: zoo:teacher}, {name: lists, path: zoo:teacher}]"
    with pytest.raises(ValueError, match=r"routed.jsonl:2: teachers: domain 'code' names no teacher"):
        train(load_config(None, ["teacher=null", teachers, "objective.name=gopd", "task.name=prompts",
                                 f"task.train_path={routed}", f"task.test_path={routed}", f"output_dir={tmp_path}"]))  # fmt: skip


def test_each_teacher_brings_its_own_reference(tiny_config):
    config = tiny_config(teacher=None, teachers=[{"name": "arith", "path": "zoo:teacher", "reference": "zoo:teacher-base"},
                                                 {"name": "lists", "path": "zoo:teacher"}],
                         task={"name": "mix"}, objective={"name": "gopd"})  # fmt: skip
    models = load_models(config, needs_reference=True)
    task = build_task(config.task)
    problems = [task.sample_train(random.Random(s)) for s in range(6)]
    sequences, _ = sample_sequences(config, models, problems, random.Random(0))
    batch = score_rollout(models, frozenset({"reference_logprobs"}), sequences, problems, task.reward)
    for index, reference_path in enumerate(["zoo:teacher-base", "zoo:student-base"]):  # default: the student's start
        rows = (batch.teacher_index == index).nonzero().squeeze(-1)
        alone = load_causal_lm(reference_path)
        micro = sequences.select(rows)
        expected = completion_logits(alone, micro.input_ids, micro.attention_mask, micro.completion_mask)
        torch.testing.assert_close(batch.select(rows).reference_logprobs,
                                   expected.token_logprobs(micro.target_ids).detach())  # fmt: skip


def test_lora_reference_is_the_adapter_disabled_base_and_stays_frozen(tiny_config):
    config = tiny_config(student={"path": "zoo:student-base", "lora": {"r": 4}}, objective={"name": "gopd"},
                         optim={"steps": 3, "lr": 5e-2}, eval={"every": 0, "num_prompts": 8}, checkpoint={"every": 0})  # fmt: skip
    models = load_models(config, needs_reference=True)
    assert models.reference.model is models.student and models.reference.adapter_disabled  # no second copy
    task = build_task(config.task)
    problems = [task.sample_train(random.Random(s)) for s in range(4)]
    sequences, _ = sample_sequences(config, models, problems, random.Random(0))
    needs = frozenset({"reference_logprobs", "old_logprobs"})
    before = score_rollout(models, needs, sequences, problems, task.reward)
    torch.testing.assert_close(before.reference_logprobs, before.old_logprobs)  # LoRA starts as the identity
    with torch.no_grad():  # move the adapter as training would
        for name, parameter in models.student.named_parameters():
            if "lora_B" in name:
                parameter.add_(0.05)
    after = score_rollout(models, needs, sequences, problems, task.reward)
    torch.testing.assert_close(after.reference_logprobs, before.reference_logprobs)
    assert (after.old_logprobs - before.old_logprobs).abs().max() > 1e-3


def test_ppo_epochs_and_minibatches_reuse_the_recorded_old_policy(tiny_config):
    from distillrl.objectives import build_objective
    from distillrl.run.trainer import update_policy

    config = tiny_config(objective={"name": "grpo"}, rollout={"group_size": 4}, optim={"epochs": 2, "minibatches": 2, "lr": 1e-2})
    built = build_objective(config.objective)
    models = load_models(config, needs_reference=False)
    task = build_task(config.task)
    problems = [task.sample_train(random.Random(s)) for s in range(8)]
    torch.manual_seed(0)
    sequences, _ = sample_sequences(config, models, problems, random.Random(0))
    signals = score_rollout(models, built.needs, sequences, problems, task.reward)
    old = signals.old_logprobs.clone()
    steps = []
    optimizer = torch.optim.AdamW(models.student.parameters(), lr=1e-2)
    original_step = optimizer.step
    optimizer.step = lambda: (steps.append(1), original_step())  # count the optimizer steps
    metrics = update_policy(config, models, built, sequences, signals, optimizer, list(models.student.parameters()))
    assert len(steps) == 4  # 2 epochs x 2 minibatches
    torch.testing.assert_close(signals.old_logprobs, old)  # pi_old is the rollout's, never re-scored
    assert metrics["clip_fraction"] > 0  # later minibatches see ratios away from 1 and clip
