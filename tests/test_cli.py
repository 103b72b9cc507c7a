"""The command line end to end, at smoke size (the full demo is measured by `distillrl demo` itself)."""

import json
import sys

from typer.testing import CliRunner

from distillrl.cli import app, before_after_table
from distillrl.report.plots import plot_training_curves

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


def test_multi_teacher_table_has_a_column_per_domain():
    def evaluation(greedy, arith, lists):
        return {"eval/accuracy_greedy": greedy, "eval/accuracy_greedy/arith": arith, "eval/accuracy_greedy/lists": lists,
                "eval/accuracy_sampled": greedy, "eval/response_length": 10.0}  # fmt: skip

    teachers = {"arith": evaluation(0.5, 0.9, 0.1), "lists": evaluation(0.45, 0.2, 0.7)}
    summary = {"teacher": teachers["arith"], "teachers": teachers, "before": evaluation(0.3, 0.35, 0.25),
               "after": evaluation(0.6, 0.65, 0.55)}  # fmt: skip
    table = before_after_table(summary)
    assert [c.header for c in table.columns][:4] == ["model", "greedy", "greedy arith", "greedy lists"]
    assert list(table.columns[2].cells) == ["0.900", "0.200", "0.350", "0.650"]
    assert list(table.columns[0].cells) == ["teacher arith", "teacher lists", "student before", "student after"]


def png_width(path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")


def test_curves_draw_the_kl_panel_only_when_there_is_a_teacher(tmp_path):
    records = [{"step": s, "eval/accuracy_greedy": 0.1 * s, "eval/accuracy_sampled": 0.1 * s} for s in range(3)]
    alone = plot_training_curves(records, tmp_path / "alone.png")
    with_kl = [dict(r, **{"train/reverse_kl": 1.0 / (1 + r["step"])}) for r in records]
    beside = plot_training_curves(with_kl, tmp_path / "beside.png", {"arith": {"eval/accuracy_greedy": 0.8}})
    assert png_width(beside) > 1.5 * png_width(alone)


def test_an_error_is_printed_as_is_not_as_console_markup(monkeypatch):
    import distillrl.control

    monkeypatch.setitem(sys.modules, "gymnasium", None)  # the control extra missing
    monkeypatch.setattr(distillrl.control, "CONTROL_EXTRA", "the [control] extra")
    result = CliRunner().invoke(app, ["control", "teacher", "--env", "CartPole-v1", "--out", "x.zip"])
    assert result.exit_code == 2
    assert "pip install -e '.[control]'" in result.output and "the [control] extra" in result.output


def test_the_cli_module_imports_no_torch_or_transformers():
    """`distillrl --help` stays fast: the heavy libraries load inside the commands that need them."""
    import subprocess

    code = "import sys, distillrl.cli; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
