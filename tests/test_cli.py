"""The command line end to end, at smoke size (the full demo is measured by `distillrl demo` itself)."""

import json

from typer.testing import CliRunner

from distillrl.cli import app

SMALL = ["--set", "optim.steps=2", "--set", "eval.num_prompts=16", "--set", "rollout.prompts_per_step=4",
         "--set", "tensorboard=false"]  # fmt: skip


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
