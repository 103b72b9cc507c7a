"""Config validation: errors name the field, file and line before any model loads."""

import pytest
from typer.testing import CliRunner

from distillrl.cli import app
from distillrl.config import ConfigError, load_config


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_unknown_key_names_field_line_and_allowed_keys(tmp_path):
    path = write(tmp_path, "seed: 1\nobjective:\n  name: reverse_kl\n  fidelty: full\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == (
        f"{path}:4: objective.fidelty: unknown key (allowed here: beta, chunk_size, clip_high, clip_low, fidelity, "
        "kl_coef, name, reward_scale, rlad_alpha, rlad_teacher_clamp, skew_alpha, skew_reverse, temperature, terms, "
        "top_k, weight)"
    )


def test_bad_value_names_field_and_allowed_values(tmp_path):
    path = write(tmp_path, "objective:\n  fidelity: exact\noptim:\n  lr: -1\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    lines = str(error.value).splitlines()
    assert lines[0] == f"{path}:2: objective.fidelity: Input should be 'sampled', 'topk' or 'full' (got 'exact')"
    assert lines[1] == f"{path}:4: optim.lr: Input should be greater than 0 (got -1)"


def test_impossible_combination_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"^--set: rollout.source: reverse_kl weighs the student's own samples"):
        load_config(None, ["rollout.source=dataset"])
    path = write(tmp_path, "objective:\n  name: reverse_kl\nteacher: null\n")
    with pytest.raises(ConfigError, match=r"run.yaml:3: teacher: objective 'reverse_kl' needs a teacher"):
        load_config(path)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["objective.name=rlad", "teacher=null"], r"^--set: teacher: objective 'rlad' needs a teacher"),
        (["objective.name=grpo", "rollout.group_size=1"], r"rollout.group_size: grpo normalises rewards within a group"),
        (["objective.name=forward_kl", "objective.fidelity=sampled"], r"objective.fidelity: 'sampled' is an estimator"),
        (["objective.name=gopd", "objective.fidelity=topk"], r"objective.fidelity: 'gopd' has no teacher-distribution"),
        (["objective.name=forward_kl", "objective.fidelity=topk", "objective.temperature=2"], r"objective.temperature"),
        (["objective.name=hybrid"], r"objective.terms: objective 'hybrid' needs at least one term"),
        (["objective.name=hybrid", "objective.terms=[{name: hybrid, terms: [{name: sft}]}]"], r"objective.terms: a hybrid"),
        (["objective.name=sft", "objective.terms=[{name: sft}]"], r"objective.terms: only objective 'hybrid'"),
        (["rollout.source=speculative", "objective.name=forward_kl", "teacher=null"], r"teacher: objective 'forward_kl'"),
        (["teachers=[{name: a}, {name: a}]"], r"teachers: the name 'a' is used twice"),
        (["teachers=[{name: a}, {name: b}]", "objective.fidelity=full"], r"objective.fidelity: several teachers"),
        (["teachers=[{name: a}]", "teacher={path: zoo:teacher}"], r"teachers: give either"),
        (["objective.name=hybrid", "objective.terms=[{name: grpo}, {name: forward_kl}]", "rollout.source=teacher"],
         r"rollout.source: grpo weighs the student's own samples"),
    ],
)
def test_impossible_method_combinations_fail_naming_fields(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_overrides_are_parsed_as_yaml():
    config = load_config(None, ["optim.lr=3e-4", "student.lora.r=4", "task.difficulty.max_ops=2"])
    assert config.optim.lr == 3e-4 and config.student.lora.r == 4 and config.task.difficulty.max_ops == 2
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["optim.lr"])


def test_shipped_recipes_validate():
    from pathlib import Path

    for recipe in sorted(Path(__file__).resolve().parent.parent.joinpath("configs").glob("*.yaml")):
        load_config(recipe)


def test_cli_reports_a_config_error_before_loading_models(tmp_path):
    path = write(tmp_path, "student:\n  path: /nonexistent/model\noptim:\n  steps: zero\n")
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 2
    assert "optim.steps" in result.output and f"{path}:4" in result.output
    assert "nonexistent" not in result.output  # the model was never looked at


def test_cli_reports_a_missing_model_clearly(tmp_path):
    path = write(tmp_path, "student:\n  path: zoo:no-such-model\n")
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 2 and "zoo:no-such-model: no such built-in model" in result.output
