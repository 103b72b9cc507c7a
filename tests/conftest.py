import pytest

from distillrl.config import TrainConfig

# `pytest -m quick`: the objectives against their brute-force values, the config, tasks, packing and the layers,
# in under a minute on 2 CPU cores (the whole suite: about 13 minutes on 2 idle cores)
QUICK_FILES = {"test_objectives.py", "test_divergences.py", "test_rl_objectives.py", "test_config.py",
               "test_packing.py", "test_task_and_data.py", "test_layers.py"}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.name in QUICK_FILES:
            item.add_marker(pytest.mark.quick)


@pytest.fixture
def tiny_config(tmp_path):
    """A fast OPD config on the shipped zoo: few prompts, few steps, small evaluation."""

    def make(**sections) -> TrainConfig:
        data = {
            "seed": 0,
            "output_dir": str(tmp_path / "run"),
            "rollout": {"prompts_per_step": 8, "group_size": 2, "max_new_tokens": 40},
            "optim": {"steps": 6, "lr": 2e-3, "warmup_steps": 0, "schedule": "constant"},
            "eval": {"every": 3, "num_prompts": 16, "max_new_tokens": 40},
            "checkpoint": {"every": 2, "keep": 2},
            "tensorboard": False,
        }
        for name, values in sections.items():
            if isinstance(values, dict) and isinstance(data.get(name), dict):
                data[name] = {**data[name], **values}
            else:
                data[name] = values
        return TrainConfig.model_validate(data)

    return make
