"""A diverging run: a step with a non-finite loss or gradient is not applied, nothing is saved at it, and the run
stops naming the step, after skipping up to `optim.skip_nonfinite_steps` such steps."""

import pytest

from distillrl.report.metrics import read_metrics
from distillrl.run.checkpoint import list_checkpoints
from distillrl.run.trainer import NonFiniteStep, train


def test_nonfinite_steps_are_skipped_up_to_the_limit_then_the_run_stops(tiny_config):
    config = tiny_config(
        optim={"steps": 4, "lr": 1e9, "skip_nonfinite_steps": 1},  # step 1 is finite and wrecks the weights
        rollout={"prompts_per_step": 2, "max_new_tokens": 8},
        eval={"every": 0, "num_prompts": 4, "max_new_tokens": 8},
        checkpoint={"every": 1, "keep": 5},
    )
    with pytest.raises(NonFiniteStep, match=r"^step 3: the loss or gradient is not finite .* Lower optim.lr \(1e\+09\)"):
        train(config, show_progress=False)
    step_1, step_2 = list_checkpoints(config.output_dir)  # none at step 3: nothing is saved at the failing step
    weights = [(c / "model" / "model.safetensors").read_bytes() for c in (step_1, step_2)]
    assert weights[0] == weights[1]  # step 2 was skipped: not applied
    assert [r["step"] for r in read_metrics(config.output_dir)] == [0, 1, 2]
