"""The zoo recipes run through `build_zoo`: a fresh model by SFT, then a model that starts from it by GRPO."""

import pytest
from safetensors.torch import load_file

from distillrl.zoo import recipes as zoo
from distillrl.zoo.build import build_zoo, stage_config
from distillrl.zoo.recipes import Stage, ZooModel, describe_build_record, read_build_record

TINY = {  # a base by SFT and a model that starts from it by GRPO, small enough to build in seconds
    "tiny-base": ZooModel("tiny-base", "1 layer x 16: SFT", stages=(Stage(steps=3, lr=1e-2, warmup_steps=1),),
                          seed=7, hidden_size=16, num_layers=1, intermediate_size=32),
    "tiny-rl": ZooModel("tiny-rl", "tiny-base after GRPO",
                        stages=(Stage(steps=2, lr=1e-3, objective="grpo", task="lists", warmup_steps=1),),
                        seed=8, init_from="tiny-base"),
}  # fmt: skip


def test_build_zoo_trains_a_base_then_a_grpo_model_from_it(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "ZOO", TINY)
    results = build_zoo(tmp_path)
    assert set(results) == {"tiny-base", "tiny-rl"}
    base, rl = (load_file(tmp_path / name / "model.safetensors") for name in ("tiny-base", "tiny-rl"))
    assert base.keys() == rl.keys()  # same architecture: tiny-rl started from tiny-base
    assert any((base[k] - rl[k]).abs().max() > 0 for k in base)  # and its GRPO stage took optimizer steps
    assert (tmp_path / "tiny-rl" / "tokenizer.json").exists()
    base_record, rl_record = (read_build_record(tmp_path / name) for name in ("tiny-base", "tiny-rl"))
    assert base_record == {"task": "arith", "level": "standard", "accuracy_greedy": results["tiny-base"]["eval/accuracy_greedy"]}
    assert rl_record["accuracy_greedy"] == results["tiny-rl"]["eval/accuracy_greedy"]
    assert (rl_record["base"], rl_record["base_task"], rl_record["base_level"]) == ("tiny-base", "lists", "standard")
    assert 0.0 <= rl_record["base_accuracy_greedy"] <= 1.0  # tiny-base measured on lists before the GRPO stage


def test_build_record_reads_as_one_line_with_the_rl_gain(tmp_path):
    record = {"task": "arith", "level": "hard", "accuracy_greedy": 0.62, "base": "hard-base", "base_task": "arith",
              "base_level": "hard", "base_accuracy_greedy": 0.45}
    assert describe_build_record(record) == "0.620 (arith, hard); base hard-base 0.450 (+0.170 of +0.550 possible)"
    assert describe_build_record(None) == "-"
    assert read_build_record(tmp_path) is None  # a model shipped before records existed


def test_a_hard_stage_trains_on_the_hard_task_with_room_for_its_solutions(tmp_path):
    spec = ZooModel("m", "", stages=(Stage(steps=1, lr=1e-3, objective="grpo", task="mix", level="hard"),), seed=1)
    config = stage_config(spec, spec.stages[0], tmp_path / "init", tmp_path / "out")
    assert (config.task.difficulty.min_ops, config.task.difficulty.max_ops) == (3, 5)
    assert (config.task.lists.min_length, config.task.lists.max_length) == (4, 8)
    assert config.task.lists.operations == ["sum", "sort"]  # the two lists operations that take work
    assert config.rollout.max_new_tokens == config.eval.max_new_tokens == 64  # hard solutions (at most 62 characters in 200,000 draws) and EOS fit
    standard = stage_config(spec, Stage(steps=1, lr=1e-3), tmp_path / "init", tmp_path / "out")
    assert standard.task.difficulty.max_ops == 3 and standard.eval.max_new_tokens == 48


def test_build_zoo_is_bit_reproducible(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "ZOO", TINY)
    build_zoo(tmp_path / "first")
    build_zoo(tmp_path / "second")
    for name in TINY:
        first, second = ((tmp_path / run / name / "model.safetensors").read_bytes() for run in ("first", "second"))
        assert first == second, name


@pytest.mark.parametrize("domain", ["arith", "lists"])
def test_the_shipped_hard_teachers_gain_over_their_base_on_held_out_hard_prompts(domain):
    """The records `zoo list` shows say +0.10 or more, and the weights agree on the first 40 held-out prompts."""
    from typer.testing import CliRunner

    from distillrl.cli import app
    from distillrl.models.zoo_paths import ZOO_DIR

    teacher = f"hard-teacher-{domain}"
    record = read_build_record(ZOO_DIR / teacher)
    assert (record["base"], record["task"], record["level"]) == ("hard-base", domain, "hard")
    assert record["accuracy_greedy"] - record["base_accuracy_greedy"] >= 0.10
    accuracy = {}
    for name in ("hard-base", teacher):
        result = CliRunner().invoke(app, ["eval", "--model", f"zoo:{name}", "--task", domain, "--level", "hard",
                                          "--max-new-tokens", "64", "--n", "40"])  # fmt: skip
        assert result.exit_code == 0, result.output
        accuracy[name] = float(result.output.split("eval/accuracy_greedy")[1].split()[1])
    assert accuracy[teacher] >= accuracy["hard-base"] + 0.10, accuracy


def test_eval_refuses_an_unknown_level():
    from typer.testing import CliRunner

    from distillrl.cli import app

    result = CliRunner().invoke(app, ["eval", "--model", "zoo:hard-base", "--level", "extreme"])
    assert result.exit_code == 2 and "--level: unknown level 'extreme' (have: standard, hard)" in result.output


def test_every_shipped_model_has_a_build_record_and_each_hard_teacher_gains_a_tenth():
    """`zoo list` shows a held-out accuracy for every model; the RL teachers with a real gain are the hard bed's."""
    from distillrl.models.zoo_paths import ZOO_DIR
    from distillrl.zoo.recipes import ZOO

    records = {name: read_build_record(ZOO_DIR / name) for name in ZOO}
    assert all(record is not None for record in records.values()), [n for n, r in records.items() if r is None]
    gains = {name: r["accuracy_greedy"] - r["base_accuracy_greedy"] for name, r in records.items() if "base" in r}
    assert set(gains) == {"teacher", "teacher-arith", "teacher-lists", "hard-teacher-arith", "hard-teacher-lists"}
    assert min(gains["hard-teacher-arith"], gains["hard-teacher-lists"]) >= 0.10
    assert max(abs(gains[name]) for name in ("teacher", "teacher-arith", "teacher-lists")) <= 0.02  # the first bed's
