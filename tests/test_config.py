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
    path = write(tmp_path, "seed: 1\nobjective:\n  name: reverse_kl\n  estimatr: full\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == (
        f"{path}:4: objective.estimatr: unknown key "
        "(allowed here: alpha, beta, chunk_size, estimator, name, skew_reverse, temperature)"
    )


def test_bad_value_names_field_and_allowed_values(tmp_path):
    path = write(tmp_path, "objective:\n  estimator: exact\noptim:\n  lr: -1\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    lines = str(error.value).splitlines()
    assert lines[0] == f"{path}:2: objective.estimator: Input should be 'sampled' or 'full' (got 'exact')"
    assert lines[1] == f"{path}:4: optim.lr: Input should be greater than 0 (got -1)"


def test_impossible_combination_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"^--set: rollout.source: reverse_kl is on-policy"):
        load_config(None, ["rollout.source=dataset"])
    path = write(tmp_path, "objective:\n  name: reverse_kl\nteacher: null\n")
    with pytest.raises(ConfigError, match=r"run.yaml:3: teacher: objective.name 'reverse_kl' needs a teacher"):
        load_config(path)


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
