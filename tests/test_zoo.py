"""The zoo recipes run through `build_zoo`: a fresh model by SFT, then a model that starts from it by GRPO."""

from safetensors.torch import load_file

from distillrl.models import zoo
from distillrl.models.zoo import Stage, ZooModel, build_zoo

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


def test_build_zoo_is_bit_reproducible(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "ZOO", TINY)
    build_zoo(tmp_path / "first")
    build_zoo(tmp_path / "second")
    for name in TINY:
        first, second = ((tmp_path / run / name / "model.safetensors").read_bytes() for run in ("first", "second"))
        assert first == second, name
