"""What a user watches (issue 24): the samples files of every evaluation and step, progress lines in a log file,
phase lines before the long start, the no-op warnings with their numbers, `eval --samples`, and a bad config
answered before torch loads."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner
from user_models import save_decoder

from distillrl.cli import app
from distillrl.config import TrainConfig
from distillrl.report.metrics import read_metrics
from distillrl.report.samples import read_samples, samples_path
from distillrl.run.trainer import train

ROOT = Path(__file__).resolve().parent.parent


def opd_config(out: Path, **sections) -> TrainConfig:
    data = {"output_dir": str(out), "tensorboard": False,
            "rollout": {"prompts_per_step": 4, "group_size": 2, "max_new_tokens": 24},
            "optim": {"steps": 4, "lr": 2e-3, "warmup_steps": 0, "schedule": "constant"},
            "eval": {"every": 2, "num_prompts": 6, "max_new_tokens": 24}, "checkpoint": {"every": 0},
            "log": {"rollout_samples": 3}}  # fmt: skip
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values} if isinstance(values, dict) else values
    return TrainConfig(**data)


def test_every_evaluation_and_step_writes_its_samples_and_they_agree_with_the_metrics(tmp_path):
    train(opd_config(tmp_path / "run"), show_progress=False)
    records = {r["step"]: r for r in read_metrics(tmp_path / "run")}
    evaluated = sorted(step for step, r in records.items() if "eval/accuracy_greedy" in r)
    assert evaluated == [0, 2, 4]
    for step in range(5):
        rows = read_samples(samples_path(tmp_path / "run", step))
        assert all(row["step"] == step for row in rows)
        kinds = [row["decoding"] for row in rows]
        if step in evaluated:
            greedy = [r for r in rows if r["decoding"] == "greedy"]
            sampled = [r for r in rows if r["decoding"] == "sampled"]
            assert len(greedy) == len(sampled) == 6
            assert sum(r["reward"] for r in greedy) / 6 == pytest.approx(records[step]["eval/accuracy_greedy"])
            assert sum(r["reward"] for r in sampled) / 6 == pytest.approx(records[step]["eval/accuracy_sampled"])
            tokens = sum(r["length"] for r in sampled)
            kl = sum(sum(r["token_reverse_kl"]) for r in sampled) / tokens  # token-weighted, as the metric
            assert kl == pytest.approx(records[step]["eval/reverse_kl"], rel=1e-4)
            assert tokens / 6 == pytest.approx(records[step]["eval/response_length"])
            assert all(len(r["tokens"]) == len(r["token_reverse_kl"]) == r["length"] for r in sampled)
            assert all(r["reverse_kl"] is None for r in greedy) and all(r["answer"] for r in rows)
        if step > 0:
            rollouts = [r for r in rows if r["decoding"] == "rollout"]
            assert len(rollouts) == 3 and kinds.count("rollout") == 3
            assert all(len(r["token_reverse_kl"]) == r["length"] and r["reward"] in (0.0, 1.0) for r in rollouts)


def test_a_run_piped_to_a_file_prints_phase_lines_and_a_plain_line_every_log_every_steps(tmp_path):
    recipe = tmp_path / "opd.yaml"
    recipe.write_text(json.dumps(opd_config(tmp_path / "run", optim={"steps": 12}, eval={"every": 6},
                                            log={"every": 5}).model_dump(mode="json")))  # fmt: skip
    with open(tmp_path / "log.txt", "w") as log:
        done = subprocess.run([sys.executable, "-m", "distillrl.cli", "train", str(recipe)], stdout=log,
                              stderr=subprocess.STDOUT, timeout=600, env={**__import__("os").environ,
                                                                           "OMP_NUM_THREADS": "1"})  # fmt: skip
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert done.returncode == 0, lines[-20:]
    starts = [i for i, line in enumerate(lines) if line.endswith(" ...")]
    assert [lines[i].split(" ")[:3] for i in starts] == [["loading", "the", "student"], ["evaluating", "the", "teacher"],
                                                          ["evaluating", "the", "student"]]  # fmt: skip
    assert "loading the student zoo:student-base and the teacher zoo:teacher ..." in lines
    assert "evaluating the teacher zoo:teacher on 6 held-out prompts ..." in lines
    progress = [line for line in lines if line.startswith("step ")]
    assert [line.split(" ")[1] for line in progress] == ["5/12", "6/12", "10/12", "12/12"]
    assert all(" | loss " in line and " tok/s | " in line and " s/step" in line for line in progress)
    assert " | ETA " in progress[0] and " | acc " in progress[1] and " | KL " in progress[0]
    assert lines.index(next(line for line in lines if line.startswith("samples at step 6:"))) < lines.index(progress[1])


def test_the_no_op_warnings_say_their_numbers_and_the_fractions_are_metrics(tmp_path, capsys):
    """Completions cut at a 3-token limit (all of them), and a random teacher that scores 0 on the held-out set."""
    teacher = save_decoder(tmp_path / "random-teacher", "llama", seed=3)
    config = opd_config(tmp_path / "run", teacher={"path": teacher}, rollout={"max_new_tokens": 3},
                        eval={"max_new_tokens": 3, "every": 0}, optim={"steps": 2})  # fmt: skip
    train(config, show_progress=False)
    err = capsys.readouterr().err
    cut = [line for line in err.splitlines() if "reached rollout.max_new_tokens" in line]
    assert len(cut) == 1 and cut[0].startswith("warning: step 1: 100% of the completions (8 of 8) reached "
                                                "rollout.max_new_tokens (3) without stopping")  # fmt: skip
    zero = [line for line in err.splitlines() if "scores 0.000" in line]
    assert zero == [f"warning: teacher {teacher} scores 0.000 on the 6 held-out prompts (greedy): its completions "
                    "never state an answer the verifier reads; check task.answer_format (or task.reward), the "
                    "teacher's chat template and eval.max_new_tokens"]  # fmt: skip
    records = [r for r in read_metrics(tmp_path / "run") if "train/loss" in r]
    assert [r["train/truncated_fraction"] for r in records] == [1.0, 1.0]


def constant_reward(prompt, completion, row):
    return 1.0


def test_grpo_logs_the_share_of_groups_with_equal_rewards(tmp_path):
    from distillrl.api import train as api_train

    api_train(opd_config(tmp_path / "run", teacher=None, objective={"name": "grpo"}, optim={"steps": 2}),
              reward=constant_reward, progress=False)  # fmt: skip
    records = [r for r in read_metrics(tmp_path / "run") if "train/loss" in r]
    assert [r["train/flat_group_fraction"] for r in records] == [1.0, 1.0]
    assert [r["train/grad_norm"] for r in records] == [0.0, 0.0]


def test_eval_samples_writes_every_completion_and_prints_two(tmp_path):
    out = tmp_path / "eval.jsonl"
    result = CliRunner().invoke(app, ["eval", "--model", "zoo:student-base", "--n", "8", "--teacher", "zoo:teacher",
                                      "--samples", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = read_samples(out)
    assert [r["decoding"] for r in rows] == ["greedy"] * 8 + ["sampled"] * 8
    printed = float(result.output.split("eval/accuracy_greedy")[1].split()[1])
    assert sum(r["reward"] for r in rows[:8]) / 8 == pytest.approx(printed, abs=5e-5)
    assert all(r["token_reverse_kl"] is not None for r in rows[8:]) and f"wrote 16 completions to {out}" in \
        " ".join(result.output.split())  # fmt: skip
    assert result.output.count(" -> ") >= 2


def test_a_bad_config_is_answered_before_torch_is_imported(tmp_path):
    (tmp_path / "bad.yaml").write_text("optim:\n  stepz: 10\n")
    code = ("import sys; from typer.testing import CliRunner; from distillrl.cli import app; "
            f"r = CliRunner().invoke(app, ['train', {str(tmp_path / 'bad.yaml')!r}]); "
            "print(r.exit_code, 'torch' in sys.modules, 'transformers' in sys.modules); print(r.output)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    first, *rest = done.stdout.splitlines()
    assert first == "2 False False", done.stdout + done.stderr
    assert "optim.stepz: unknown key" in "\n".join(rest)
