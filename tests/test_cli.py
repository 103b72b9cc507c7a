"""The command line end to end, at smoke size (the full demo is measured by `distillrl demo` itself)."""

import json

from typer.testing import CliRunner

from distillrl.cli import app

SMALL = ["--set", "optim.steps=2", "--set", "eval.num_prompts=16", "--set", "rollout.prompts_per_step=4",
         "--set", "tensorboard=false"]  # fmt: skip


def test_demo_writes_summary_plot_and_metrics(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"teacher_accuracy", "student_accuracy_before", "student_accuracy_after", "steps", "wall_seconds"}
    assert summary["steps"] == 2 and 0 <= summary["student_accuracy_after"] <= 1
    assert summary["teacher_accuracy"] > summary["student_accuracy_before"]  # the shipped pair leaves a gap
    assert (out / "curves.png").stat().st_size > 10_000
    assert "student after" in result.output


def test_train_recipe_then_resume_and_eval(tmp_path):
    out = tmp_path / "opd"
    runner = CliRunner()
    result = runner.invoke(app, ["train", "configs/opd.yaml", "--set", f"output_dir={out}", *SMALL])
    assert result.exit_code == 0, result.output
    assert (out / "checkpoints" / "step_000002" / "model" / "model.safetensors").exists()
    resumed = runner.invoke(app, ["train", "configs/opd.yaml", "--set", f"output_dir={out}", *SMALL, "--resume"])
    assert resumed.exit_code == 0, resumed.output  # already finished: nothing more to do, nothing lost
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]
    evaluated = runner.invoke(app, ["eval", "--model", str(out / "checkpoints" / "step_000002" / "model"), "--n", "16"])
    assert evaluated.exit_code == 0 and "eval/accuracy_greedy" in evaluated.output


def test_forward_kl_and_sft_recipes_run(tmp_path):
    for recipe in ("forward_kl", "sft"):
        out = tmp_path / recipe
        result = CliRunner().invoke(app, ["train", f"configs/{recipe}.yaml", "--set", f"output_dir={out}", *SMALL])
        assert result.exit_code == 0, result.output
        losses = [json.loads(line).get("train/loss") for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert all(loss is not None and loss > 0 for loss in losses[1:])


def test_eval_on_a_builtin_multi_domain_task_reports_each_domain():
    result = CliRunner().invoke(app, ["eval", "--model", "zoo:teacher-lists", "--task", "mix", "--n", "8"])
    assert result.exit_code == 0, result.output
    assert "eval/accuracy_greedy/arith" in result.output and "eval/accuracy_greedy/lists" in result.output
