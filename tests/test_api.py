"""The Python API (distillrl/api.py): the README's "From Python" example as written, configs from dicts with the
command line's one-line errors, `evaluate` equal to `distillrl eval`, Python objects (a reward function, rows, a
`datasets.Dataset`, a loaded model and tokenizer) going in, and the examples/ scripts at a tiny size."""

import json
import re
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml
from typer.testing import CliRunner
from user_models import user_model

import distillrl
from distillrl.cli import app

ROOT = Path(__file__).resolve().parent.parent
CHATML_PROMPTS = ["one two", "three four", "five six", "seven eight"]


def from_python_block() -> str:
    """The python code block of README's "From Python" section."""
    section = (ROOT / "README.md").read_text().split("## From Python", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def test_the_readmes_from_python_example_runs_as_written(tmp_path):
    """Run in a folder whose configs/opd.yaml is the recipe at a small evaluation size (the code is the README's)."""
    recipe = yaml.safe_load((ROOT / "configs/opd.yaml").read_text())
    recipe["eval"]["num_prompts"], recipe["rollout"]["prompts_per_step"], recipe["tensorboard"] = 16, 8, False
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs/opd.yaml").write_text(yaml.safe_dump(recipe))
    done = subprocess.run([sys.executable, "-c", from_python_block()], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout.split()
    assert 0.0 <= float(printed[0]) <= 1.0 and printed[1] == "runs/api/final" and 0.0 <= float(printed[2]) <= 1.0
    records = [json.loads(line) for line in (tmp_path / "runs/api/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train/loss" in r] == [1, 2, 3, 4]
    assert float(printed[0]) == records[-1]["eval/accuracy_greedy"]
    assert (tmp_path / "runs/api/final/config.json").exists()


def test_a_config_from_a_dict_is_validated_as_yaml_is_with_the_same_one_line_error(tmp_path):
    with pytest.raises(distillrl.ConfigError) as from_dict:
        distillrl.TrainConfig(optim={"lr": "fast"}, output_dir=str(tmp_path))
    (tmp_path / "bad.yaml").write_text("optim:\n  lr: fast\n")
    with pytest.raises(distillrl.ConfigError) as from_yaml:
        distillrl.load_config(tmp_path / "bad.yaml")
    assert str(from_dict.value) == "TrainConfig: optim.lr: Input should be a valid number, unable to parse string " \
                                   "as a number (got 'fast')"  # fmt: skip
    assert str(from_yaml.value) == f"{tmp_path / 'bad.yaml'}:2: optim.lr: Input should be a valid number, unable " \
                                   "to parse string as a number (got 'fast')"  # fmt: skip
    assert isinstance(from_dict.value, distillrl.UserError) and "\n" not in str(from_dict.value)
    with pytest.raises(distillrl.ConfigError, match=r"^TrainConfig: objective.nme: unknown key"):
        distillrl.TrainConfig(objective={"nme": "sft"})


def test_dict_overrides_equal_set_assignments():
    by_dict = distillrl.load_config(ROOT / "configs/opd.yaml", {"optim.steps": 4, "output_dir": "runs/api",
                                                                "rollout.stop_strings": ["\n\n"]})  # fmt: skip
    by_set = distillrl.load_config(ROOT / "configs/opd.yaml", ["optim.steps=4", "output_dir=runs/api",
                                                               'rollout.stop_strings=["\\n\\n"]'])  # fmt: skip
    assert by_dict == by_set and by_dict.optim.steps == 4 and by_dict.rollout.stop_strings == ["\n\n"]
    assert distillrl.TrainConfig(**by_dict.model_dump()) == by_dict


def test_evaluate_gives_what_distillrl_eval_prints():
    api = distillrl.evaluate("zoo:student-base", task="arith", n=20)
    printed = CliRunner().invoke(app, ["eval", "--model", "zoo:student-base", "--task", "arith", "--n", "20"]).output
    cli = {name: float(value) for name, value in re.findall(r"eval/(\S+)\s*│\s*(-?[\d.]+)", printed)}
    assert set(api) == set(cli) == {"accuracy_greedy", "accuracy_sampled", "response_length", "entropy"}
    assert all(abs(api[name] - cli[name]) < 5e-5 for name in api), (api, cli)


def length_reward(prompt, completion, row):
    """Longer completions score more (up to 1 at 12 characters): a reward GRPO visibly climbs."""
    return min(len(completion), 12) / 12


def test_a_reward_function_and_rows_in_memory_train_and_are_written_for_the_run(tmp_path):
    rows = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a in range(8) for b in range(8)]
    seen = []
    result = distillrl.train(
        {"output_dir": str(tmp_path / "run"), "tensorboard": False, "student": {"path": "zoo:student-base"},
         "teacher": None, "objective": {"name": "grpo"},
         "rollout": {"prompts_per_step": 8, "group_size": 4, "max_new_tokens": 16},
         "optim": {"steps": 6, "lr": 3e-3, "warmup_steps": 0, "schedule": "constant"},
         "eval": {"every": 0, "num_prompts": 8, "max_new_tokens": 16}},
        train_data=rows[:48], test_data=datasets.Dataset.from_list(rows[48:]), reward=length_reward,
        on_step=lambda step, record: seen.append((step, record["train/reward"])), progress=False)  # fmt: skip
    assert [step for step, _ in seen] == [1, 2, 3, 4, 5, 6]
    assert seen[-1][1] > seen[0][1] + 0.05, seen  # the Python reward is the one trained on
    stored = yaml.safe_load((tmp_path / "run/config.yaml").read_text())["task"]
    assert stored["name"] == "prompts" and Path(stored["train_path"]).parent == tmp_path / "inputs"
    written = [json.loads(line) for line in Path(stored["train_path"]).read_text().splitlines()]
    assert written == rows[:48]
    assert [json.loads(line) for line in Path(stored["test_path"]).read_text().splitlines()] == rows[48:]
    assert result.final_model == tmp_path / "run/final" and result.metrics[-1]["step"] == 6


def test_a_loaded_user_model_and_tokenizer_train_and_the_run_names_their_saved_copy(tmp_path):
    """A tiny Qwen3 with a byte-level BPE and a ChatML template, made here and given as objects: SFT on rows."""
    model, tokenizer = user_model("qwen3", seed=1)
    rows = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": p.upper()}],
             "answer": p.upper()} for p in CHATML_PROMPTS] * 4  # fmt: skip
    config = distillrl.TrainConfig(
        output_dir=str(tmp_path / "run"), tensorboard=False, teacher=None, objective={"name": "sft"},
        rollout={"source": "dataset", "prompts_per_step": 8, "max_new_tokens": 12},
        optim={"steps": 8, "lr": 3e-3, "warmup_steps": 0, "schedule": "constant"},
        eval={"every": 0, "num_prompts": 4, "max_new_tokens": 12},
    )  # fmt: skip
    losses = []
    result = distillrl.train(config, train_data=rows, test_data=rows[:4], student=model, tokenizer=tokenizer,
                             on_step=lambda step, record: losses.append(record["train/loss"]), progress=False)  # fmt: skip
    assert losses[-1] < 0.8 * losses[0], losses
    student_path = Path(yaml.safe_load((tmp_path / "run/config.yaml").read_text())["student"]["path"])
    assert student_path.parent == tmp_path / "inputs" and student_path.name.startswith("model-")
    assert (student_path / "config.json").exists() and (student_path / "tokenizer.json").exists()
    again = distillrl.train(config.model_copy(update={"output_dir": str(tmp_path / "again")}), train_data=rows,
                            test_data=rows[:4], student=model, tokenizer=tokenizer, progress=False)  # fmt: skip
    assert len(list((tmp_path / "inputs").glob("model-*"))) == 1  # the same model is stored once
    assert (again.final_model / "config.json").exists() and (result.final_model / "config.json").exists()
    with pytest.raises(distillrl.UserError, match="needs its tokenizer"):
        distillrl.train(config, student=model)


@pytest.mark.parametrize("script, says", [
    ("opd_zoo.py", r"greedy accuracy [\d.]+ -> [\d.]+; trained model in runs/example-opd/final"),
    ("custom_reward.py", r"mean reward, first step [\d.]+, last step [\d.]+; held-out greedy accuracy [\d.]+"),
    ("teacher_server.py", r"reverse KL to the served teacher: first step [\d.]+, last step [\d.]+"),
])  # fmt: skip
def test_each_example_runs_at_a_tiny_size(script, says, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--steps", "2", "--eval-prompts", "4"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(says, done.stdout), done.stdout
